"""A grid of reconstructions, the picture a training run (and the demo) writes to show how it is doing.

Reconstruction quality (PSNR, SSIM, codebook usage, rFID) is `pipelines.evaluation.evaluate_tokenizer`: it
shares the Inception metrics with generation evaluation, which cannot live in this package.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image

from ..models.loading import Tokenizer


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
