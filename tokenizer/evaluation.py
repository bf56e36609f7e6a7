"""Tokenizer-only measurements: encode/decode throughput and a grid of reconstructions.

Reconstruction quality (PSNR, SSIM, codebook usage, rFID) is `pipelines.evaluation.evaluate_tokenizer`: it
shares the Inception metrics with generation evaluation, which cannot live in this package.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from .loading import Tokenizer


@torch.no_grad()
def codec_throughput(model: Tokenizer, images: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """Images per second of `encode` and of `decode` on an in-memory batch (best of `repeats`)."""
    model.eval()
    indices = model.encode(images)  # warm-up
    model.decode(indices)
    best_enc = best_dec = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        indices = model.encode(images)
        mid = time.perf_counter()
        model.decode(indices)
        end = time.perf_counter()
        best_enc, best_dec = min(best_enc, mid - start), min(best_dec, end - mid)
    n = images.shape[0]
    return {"encode_images_per_s": n / best_enc, "decode_images_per_s": n / best_dec}


@torch.no_grad()
def save_reconstruction_grid(model: Tokenizer, images: torch.Tensor, path: str | Path) -> None:
    """PNG with the originals (top row) above their reconstructions (bottom row); images (n, 3, H, W)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    recon = model.decode(model.encode(images.to(device))).float().cpu().clamp(-1, 1)
    model.train(was_training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat([images.float().cpu(), recon]), path, nrow=images.shape[0], normalize=True, value_range=(-1, 1))
