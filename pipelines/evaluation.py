"""Quality of both stages against a dataset split, on TF-Inception features (pipelines.inception).

`evaluate_tokenizer`: reconstruction PSNR and SSIM on the [0, 1] scale (torchmetrics), LPIPS (the shipped
ST-LPIPS), codebook usage and perplexity over every code the split produces (a vae: its KL and negative ELBO),
each model's rate in bits per image, and rFID (originals against their reconstructions).
`evaluate_generation`: FID, KID (mean and spread) and precision/recall of pipeline samples against the split,
each with its floors: the same metrics between two disjoint sets of real images at the same counts, and the
tokenizer's reconstructions of the reference images against them (what a prior that wrote exactly the reference
images' own codes would score through this decoder).
Features of real images are cached as .npy (keyed by dataset, split, size and preprocessing), and those of a
tokenizer's reconstructions by its fingerprint, so a sweep over sampling settings only pays for its samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from tqdm.auto import tqdm

from tokenizer.models.loading import Tokenizer
from tokenizer.data import ImageDataConfig, SkipCounter, build_image_dataset, collate_images
from tokenizer.losses.perceptual import build_perceptual_loss
from tokenizer.models.quantizer import code_statistics, level_statistics
from tokenizer.models.vae import gaussian_kl

from .colour import FlatColourError
from .generation import ImageGenerationPipeline
from .metrics import InceptionDistances

# LPIPS of reconstructions: the shipped shift-tolerant AlexNet variant (the LPIPS authors' forward metric is
# AlexNet; the VGG variant is the default *training* loss, and a metric should not be the loss it judges).
LPIPS_NETWORK = "stlpips-alex"
DEFAULT_NUM_IMAGES = 2000  # the protocol's floor for a quality claim (DESIGN.md, "Measuring quality")


def default_cache_dir() -> Path:
    return Path(os.environ.get("TESSERA_CACHE", Path.home() / ".cache" / "tessera")) / "inception"


def check_count(value, name: str, allow_none: bool = False) -> None:
    """ValueError unless `value` is a positive integer (or None where that means "all")."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer" + (" or None (all)" if allow_none else ""))


def split_images(data: ImageDataConfig, num_images: int | None = None, batch_size: int = 64, num_workers: int = 0,
                 skips: SkipCounter | None = None, desc: str = "images", progress: bool = True,
                 ) -> Iterator[torch.Tensor]:
    """Batches (B, 3, H, W) in [-1, 1] of the first `num_images` (default: all) readable images of a split.

    Unreadable files are counted into `skips`; a split with no readable image raises ValueError.
    """
    check_count(num_images, "num_images", allow_none=True)
    dataset = build_image_dataset(data)
    wanted = min(num_images or len(dataset), len(dataset))
    skips = skips if skips is not None else SkipCounter()
    seen = 0
    with tqdm(total=wanted, desc=desc, unit="img", disable=not progress) as bar:
        for batch in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_images):
            skips.update(batch["skipped"])
            images = batch["image"][: wanted - seen]
            if images.shape[0]:
                yield images
                seen += images.shape[0]
                bar.update(images.shape[0])
            if seen >= wanted:
                break
    if seen == 0:
        raise ValueError(f"no readable images in {dataset.source}: {skips.summary()}")


class _CodeStatistics:
    """Reconstructs through the codes and counts them: usage and perplexity per level, and the rate."""

    def __init__(self, model: Tokenizer):
        self.model = model
        self.counts = [torch.zeros(size, dtype=torch.float64) for size in model.config.codebook_sizes]  # per level

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        grids = self.model.encode_levels(images)
        for level_counts, grid in zip(self.counts, grids):
            level_counts += torch.bincount(grid.flatten().cpu(), minlength=level_counts.numel()).double()
        return self.model.decode_levels(grids)

    def result(self) -> dict[str, float]:
        config = self.model.config
        # What every image costs to store with a fixed-length code: cells × log2(codebook size), summed over levels.
        rate = sum(h * w * math.log2(size) for (h, w), size in zip(config.grid_shapes, config.codebook_sizes))
        return {**level_statistics([code_statistics(c) for c in self.counts]), "rate_bits_per_image": rate}


class _GaussianELBO:
    """A vae's reconstructions (from the posterior mean) and its negative ELBO.

    The likelihood is a Laplace with one scale b for every pixel, fit to the split (its maximum-likelihood value, the
    mean absolute error of the reconstructions of one reparameterised sample z ~ q(z|x)), and is read on the
    8-bit scale (+ ln 127.5 nats per dimension for [-1, 1] → [0, 255]) so bits per dimension compare with the
    usual image-model figures. The rate is the KL in bits.
    """

    def __init__(self, model: Tokenizer, seed: int = 0):
        self.model = model
        self.generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
        self.kl, self.abs_error, self.dims = [], 0.0, 0  # per-image KLs, Σ|x − x̂| and its count

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        mean, logvar = self.model.encode_distribution(images)
        self.kl.append(gaussian_kl(mean, logvar).cpu())  # (B,) nats
        sampled = self.model.decode(self.model.sample_posterior(mean, logvar, self.generator)).float()
        self.abs_error += float((sampled - images.float()).abs().sum())
        self.dims += images.numel()  # over the batch: B·3·H·W
        return self.model.decode(mean)

    def result(self) -> dict[str, float]:
        kls = torch.cat(self.kl)  # (N,)
        kl, dims = float(kls.mean()), self.dims // kls.numel()  # mean nats per image; 3·H·W
        scale = max(self.abs_error / self.dims, 1e-8)  # the Laplace scale b on [-1, 1]
        nll = dims * (1.0 + math.log(2 * scale) + math.log(127.5))  # nats per image, 8-bit scale
        nelbo = nll + kl
        return {"kl_nats": kl, "rate_bits_per_image": kl / math.log(2),
                "laplace_scale": scale, "reconstruction_nll_nats": nll, "nelbo_nats": nelbo,
                "nelbo_bits_per_dim": nelbo / (dims * math.log(2))}


@torch.no_grad()
def evaluate_tokenizer(
    model: Tokenizer,
    data: ImageDataConfig,
    num_images: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    rfid: bool = True,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> dict[str, float]:
    """Reconstruct the first `num_images` readable images of the split and measure them.

    Returns psnr, ssim, lpips (per-image means), flat_colour_error (pipelines.colour; None on grey images), rfid,
    rkid_mean and rkid_std (None when rfid=False), num_images, skipped_images and rate_bits_per_image (what an image
    costs: cells × log2(codebook size) summed over levels, or a vae's KL in bits). A code tokenizer adds
    codebook_usage and perplexity; a two-level one per level too (top_*, bottom_*) with codebook_usage the lower one
    (tokenizer.quantizer.level_statistics). A vae adds kl_nats, laplace_scale, reconstruction_nll_nats, nelbo_nats
    and nelbo_bits_per_dim (see _GaussianELBO) and reconstructs from the posterior mean. rFID and rKID compare the
    reconstructions with the originals' cached features; KID is unbiased at any count, so it ranks runs evaluated on
    a few hundred images where FID's bias of tens of points would not.
    """
    device = next(model.parameters()).device
    model.eval()
    lpips = build_perceptual_loss(LPIPS_NETWORK).to(device)
    psnrs, ssims, lpipses, colour = [], [], [], FlatColourError()
    latent = _GaussianELBO(model) if model.num_levels == 0 else _CodeStatistics(model)
    skips = SkipCounter()
    recon_features = []
    # Loads an 87 MB TorchScript file: only when rFID is asked for.
    distances = InceptionDistances(precision_recall_k=None).to(device) if rfid else None
    for images in split_images(data, num_images, batch_size, num_workers, skips, "evaluate", progress):
        images = images.to(device)
        recon = latent.reconstruct(images).clamp(-1, 1)
        real, fake = _to_unit(images), _to_unit(recon)
        psnrs.append(peak_signal_noise_ratio(fake, real, data_range=1.0, reduction="none", dim=(1, 2, 3)).cpu())
        ssims.append(structural_similarity_index_measure(fake, real, data_range=1.0, reduction="none").cpu())
        lpipses.append(lpips(recon.float(), images.float()).flatten().cpu())  # (B,)
        colour.update(real, fake)
        if distances is not None:
            recon_features.append(distances.features(recon.float()).float().cpu())  # (B, 2048)
    psnr = torch.cat(psnrs)  # (N,)
    inception = {"fid": None, "kid_mean": None, "kid_std": None}
    if distances is not None:
        originals = reference_features(data, num_images, distances.features, cache_dir, batch_size, progress)
        distances.update_real(torch.from_numpy(originals))
        distances.update_fake(torch.cat(recon_features))
        inception = distances.compute()
    return {
        "psnr": float(psnr.mean()),
        "ssim": float(torch.cat(ssims).mean()),
        "lpips": float(torch.cat(lpipses).mean()),
        "flat_colour_error": colour.compute(),
        **latent.result(),
        "rfid": inception["fid"],
        "rkid_mean": inception["kid_mean"],
        "rkid_std": inception["kid_std"],
        "num_images": psnr.numel(),
        "skipped_images": skips.count,
    }


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1)


def _cached_features(key: dict, compute: Callable[[], np.ndarray], cache_dir: str | Path | None) -> np.ndarray:
    """`compute()` (N, D) float32, stored as .npy under a hash of `key` and read back on the next call."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    cache = Path(cache_dir or default_cache_dir()) / f"{digest}.npy"
    if cache.is_file():
        return np.load(cache, allow_pickle=False)
    feats = compute()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npy")
    np.save(tmp, feats, allow_pickle=False)
    os.replace(tmp, cache)  # a half-written cache never reads as valid
    return feats


def _images_key(data: ImageDataConfig, num_images: int | None, content: str | None) -> dict:
    """The cache key of features computed from a split's images: how they are read and preprocessed, how many,
    and what they are (the data set's content_key: file sizes and times, or the pixels' hash; computed here when
    `content` is None), never only where they are, so changed images at the same path are measured anew."""
    return {**asdict(data), "num_images": num_images, "content": content or _content_key(data), "v": 2}


def _content_key(data: ImageDataConfig) -> str:
    return build_image_dataset(data).content_key()


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters(), torch.zeros(())).device


@torch.no_grad()
def reference_features(
    data: ImageDataConfig, num_images: int | None, features: nn.Module, cache_dir: str | Path | None = None,
    batch_size: int = 64, progress: bool = True, content: str | None = None,
) -> np.ndarray:
    """Features (N, D) float32 of the first `num_images` (None: all) readable images of a split, cached on disk.

    features: the module mapping images (B, 3, H, W) to (B, D); the cache key assumes the TF-FID Inception.
    content: the split's content_key where the caller has it already (else it is computed).
    """
    def compute() -> np.ndarray:
        batches = split_images(data, num_images, batch_size, desc=f"features of {data.split}", progress=progress)
        return np.concatenate([features(images.to(_device_of(features))).float().cpu().numpy() for images in batches])

    return _cached_features(_images_key(data, num_images, content), compute, cache_dir)


@torch.no_grad()
def reconstruction_features(
    tokenizer: Tokenizer, data: ImageDataConfig, num_images: int | None, features: nn.Module,
    cache_dir: str | Path | None = None, batch_size: int = 64, progress: bool = True, content: str | None = None,
) -> np.ndarray:
    """Features (N, D) of the tokenizer's reconstructions of the same images as `reference_features` (`content`
    likewise), cached under the tokenizer's fingerprint (any change of weights or config computes them anew)."""
    def compute() -> np.ndarray:
        device = next(tokenizer.parameters()).device
        batches = split_images(data, num_images, batch_size, desc="features of reconstructions", progress=progress)
        return np.concatenate([
            features(tokenizer.decode(tokenizer.encode(images.to(device))).clamp(-1, 1).to(_device_of(features)))
            .float().cpu().numpy() for images in batches])

    return _cached_features({**_images_key(data, num_images, content), "tokenizer": tokenizer.fingerprint()},
                            compute, cache_dir)


def _feature_metrics(network: nn.Module, reference: np.ndarray, other: np.ndarray, kid_subset_size: int) -> dict:
    """FID, KID and precision/recall between two cached feature sets."""
    distances = InceptionDistances(network, kid_subset_size=kid_subset_size)
    distances.update_real(torch.from_numpy(reference))
    distances.update_fake(torch.from_numpy(other))
    return {**distances.compute(), "num_images": int(other.shape[0])}


@torch.no_grad()
def evaluate_generation(
    pipe: ImageGenerationPipeline,
    data: ImageDataConfig,
    num_images: int = DEFAULT_NUM_IMAGES,
    class_labels=None,
    guidance_scale: float = 1.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    kid_subset_size: int = 1000,
    floor_split: str | None = "train",
    tokenizer_floor: bool = True,
    progress: bool = True,
) -> dict:
    """FID, KID (mean, std), precision and recall of `num_images` samples against as many images of the split
    (all of it where it is smaller), with the floors at the same counts under "floor".

    class_labels: None (unconditional), "uniform" (cycle through every class), or what the pipeline takes.
    floor_split: a split disjoint from `data.split`; `num_images` of its images against the same reference give
    "floor"/"real" (what real images score). None skips it.
    tokenizer_floor: the tokenizer's reconstructions of the reference images against them give "floor"/"tokenizer"
    (its rFID and the rest, over the reference count: what a prior writing exactly the reference images' codes
    would score through this decoder).
    """
    check_count(num_images, "num_images")
    check_count(batch_size, "batch_size")
    if floor_split is not None and floor_split == data.split:
        raise ValueError(f"floor_split={floor_split!r} is the evaluated split: expected a disjoint one (e.g. 'train')")
    floor_data = dataclasses.replace(data, split=floor_split) if floor_split is not None else None
    content = _content_key(data)  # once per split: every cache key below needs it
    floor_content = _content_key(floor_data) if floor_data is not None else None
    if floor_content == content:
        raise ValueError(f"floor_split={floor_split!r} holds the same images as split={data.split!r} of "
                         f"{data.dataset}: the real floor would compare a set with itself; give a disjoint split "
                         "or floor_split=None (--floor_split none)")
    distances = InceptionDistances(kid_subset_size=kid_subset_size).to(pipe.device)
    network = distances.features.network
    # The split's features go in as (N, 2048) and skip Inception.
    reference = reference_features(data, num_images, distances.features, cache_dir, batch_size, progress, content)
    distances.update_real(torch.from_numpy(reference))
    # Floors first: a missing floor split fails before minutes of sampling, not after.
    floor = {}
    if floor_split is not None:
        real = reference_features(floor_data, num_images, distances.features, cache_dir, batch_size, progress,
                                  floor_content)
        floor["real"] = {**_feature_metrics(network, reference, real, kid_subset_size), "split": floor_split}
    if tokenizer_floor:
        recon = reconstruction_features(pipe.tokenizer, data, num_images, distances.features, cache_dir, batch_size,
                                        progress, content)
        floor["tokenizer"] = _feature_metrics(network, reference, recon, kid_subset_size)
    if class_labels == "uniform":
        class_labels = pipe.cycled_class_labels(num_images)
    generator = torch.Generator(pipe.device).manual_seed(seed)
    bar = tqdm(total=num_images, desc="generate", unit="img", disable=not progress)
    for start in range(0, num_images, batch_size):
        n = min(batch_size, num_images - start)
        labels = class_labels[start : start + n] if isinstance(class_labels, list) else class_labels
        images = pipe(n, class_labels=labels, guidance_scale=guidance_scale, temperature=temperature, top_k=top_k,
                      top_p=top_p, generator=generator, output_type="pt", batch_size=n, progress=False).images
        distances.update_fake(images * 2 - 1)  # output_type="pt" is in [0, 1]
        bar.update(n)
    bar.close()
    result = {**distances.compute(), "num_images": distances.num_fake, "num_reference_images": distances.num_real}
    if floor:
        result["floor"] = floor
    return result
