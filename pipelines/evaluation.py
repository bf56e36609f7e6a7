"""Quality of both stages against a dataset split, on TF-Inception features (pipelines.inception).

`evaluate_tokenizer`: reconstruction PSNR and SSIM on the [0, 1] scale (torchmetrics), codebook usage and
perplexity over every code the split produces, and rFID (originals against their reconstructions).
`evaluate_generation`: FID and KID of pipeline samples against the split. The split's features are cached
as .npy (keyed by dataset, split, size and preprocessing), so a second evaluation against the same split only
pays for the generated images.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from tqdm.auto import tqdm

from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig, SkipCounter, build_image_dataset, collate_images
from tokenizer.quantizer import code_statistics

from .generation import ImageGenerationPipeline
from .metrics import InceptionDistances


def default_cache_dir() -> Path:
    return Path(os.environ.get("TESSERA_CACHE", Path.home() / ".cache" / "tessera")) / "inception"


def split_images(data: ImageDataConfig, num_images: int | None = None, batch_size: int = 64, num_workers: int = 0,
                 skips: SkipCounter | None = None, desc: str = "images", progress: bool = True,
                 ) -> Iterator[torch.Tensor]:
    """Batches (B, 3, H, W) in [-1, 1] of the first `num_images` (default: all) readable images of a split.

    Unreadable files are counted into `skips`; a split with no readable image raises ValueError.
    """
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


@torch.no_grad()
def evaluate_tokenizer(
    model: VQGAN,
    data: ImageDataConfig,
    num_images: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    rfid: bool = True,
    progress: bool = True,
) -> dict[str, float]:
    """Reconstruct the first `num_images` readable images of the split and measure them.

    Returns psnr, ssim, codebook_usage, perplexity, rfid (None when rfid=False), num_images, skipped_images.
    """
    device = next(model.parameters()).device
    model.eval()
    # Loads an 87 MB TorchScript file: only when rFID is asked for.
    distances = InceptionDistances(kid=False).to(device) if rfid else None
    psnrs, ssims = [], []
    counts = torch.zeros(model.config.codebook_size, dtype=torch.float64)
    skips = SkipCounter()
    for images in split_images(data, num_images, batch_size, num_workers, skips, "evaluate", progress):
        images = images.to(device)
        indices = model.encode(images)
        recon = model.decode(indices).clamp(-1, 1)
        counts += torch.bincount(indices.flatten().cpu(), minlength=counts.numel()).double()
        real, fake = _to_unit(images), _to_unit(recon)
        psnrs.append(peak_signal_noise_ratio(fake, real, data_range=1.0, reduction="none", dim=(1, 2, 3)).cpu())
        ssims.append(structural_similarity_index_measure(fake, real, data_range=1.0, reduction="none").cpu())
        if distances is not None:
            distances.update_real(images.float())
            distances.update_fake(recon.float())
    psnr = torch.cat(psnrs)  # (N,)
    return {
        "psnr": float(psnr.mean()),
        "ssim": float(torch.cat(ssims).mean()),
        **code_statistics(counts),
        "rfid": distances.compute()["fid"] if distances is not None else None,
        "num_images": psnr.numel(),
        "skipped_images": skips.count,
    }


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1)


@torch.no_grad()
def reference_features(
    data: ImageDataConfig, num_images: int, features: nn.Module, cache_dir: str | Path | None = None,
    batch_size: int = 64, progress: bool = True,
) -> np.ndarray:
    """Features (N, D) float32 of the first `num_images` readable images of a split, cached on disk.

    features: the module mapping images (B, 3, H, W) to (B, D); the cache key assumes the TF-FID Inception.
    """
    key = hashlib.sha256(json.dumps({**asdict(data), "num_images": num_images, "v": 1}, sort_keys=True).encode())
    cache = Path(cache_dir or default_cache_dir()) / f"{key.hexdigest()[:24]}.npy"
    if cache.is_file():
        return np.load(cache, allow_pickle=False)
    device = next(features.parameters(), torch.zeros(())).device
    batches = split_images(data, num_images, batch_size, desc="reference features", progress=progress)
    feats = np.concatenate([features(images.to(device)).float().cpu().numpy() for images in batches])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npy")
    np.save(tmp, feats, allow_pickle=False)
    os.replace(tmp, cache)  # a half-written cache never reads as valid
    return feats


@torch.no_grad()
def evaluate_generation(
    pipe: ImageGenerationPipeline,
    data: ImageDataConfig,
    num_images: int,
    class_labels=None,
    guidance_scale: float = 1.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    kid_subset_size: int = 1000,
    progress: bool = True,
) -> dict[str, float]:
    """FID, KID (mean, std) and the counts, for `num_images` samples against as many reference images.

    class_labels: None (unconditional), "uniform" (cycle through every class), or what the pipeline takes.
    """
    distances = InceptionDistances(kid_subset_size=kid_subset_size).to(pipe.device)
    # The split's features go in as (N, 2048) and skip Inception.
    reference = reference_features(data, num_images, distances.features, cache_dir, batch_size, progress)
    distances.update_real(torch.from_numpy(reference))
    if class_labels == "uniform":
        class_labels = [i % pipe.prior.config.num_classes for i in range(num_images)]
    generator = torch.Generator(pipe.device).manual_seed(seed)
    bar = tqdm(total=num_images, desc="generate", unit="img", disable=not progress)
    for start in range(0, num_images, batch_size):
        n = min(batch_size, num_images - start)
        labels = class_labels[start : start + n] if isinstance(class_labels, list) else class_labels
        images = pipe(n, class_labels=labels, guidance_scale=guidance_scale, temperature=temperature, top_k=top_k,
                      top_p=top_p, generator=generator, output_type="pt", batch_size=n).images
        distances.update_fake(images * 2 - 1)  # output_type="pt" is in [0, 1]
        bar.update(n)
    bar.close()
    return {
        **distances.compute(),
        "num_images": distances.num_fake,
        "num_reference_images": distances.num_real,
    }
