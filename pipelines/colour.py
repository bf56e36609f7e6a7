"""Colour fidelity on flat regions: how far a reconstruction moves the colour of areas painted in one colour
(an emoji's purple coming back blue), which PSNR averages away among edges and background.

A pixel counts when its 5x5 neighbourhood in the original is flat (per-channel std < 0.02 on the [0, 1] scale)
and coloured (max − min channel > 0.15: white background and greys are left out). The error is the Euclidean RGB
distance in 8-bit levels (0-441), averaged over those pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FLAT_WINDOW = 5
FLAT_STD = 0.02
MIN_CHROMA = 0.15


def flat_colour_mask(images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] → (B, H, W) bool: flat, coloured pixels."""
    pool = dict(kernel_size=FLAT_WINDOW, stride=1, padding=FLAT_WINDOW // 2, count_include_pad=False)
    mean = F.avg_pool2d(images, **pool)
    std = (F.avg_pool2d(images * images, **pool) - mean * mean).clamp(min=0).sqrt()  # (B, 3, H, W)
    chroma = images.amax(1) - images.amin(1)
    return (std.amax(1) < FLAT_STD) & (chroma > MIN_CHROMA)


class FlatColourError:
    """Accumulates the flat-region colour error over batches of originals and reconstructions in [0, 1]."""

    def __init__(self) -> None:
        self.total, self.pixels = 0.0, 0

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        mask = flat_colour_mask(real.float())
        distance = (real.float() - fake.float()).norm(dim=1) * 255  # (B, H, W)
        self.total += float(distance[mask].sum())
        self.pixels += int(mask.sum())

    def compute(self) -> float | None:
        """Mean error in 8-bit RGB levels; None when no pixel was flat and coloured (a grey data set)."""
        return self.total / self.pixels if self.pixels else None
