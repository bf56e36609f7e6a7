"""Encode a range of a dataset into code grids, batch by batch (the tokenize command's inner loop)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .data import collate_images
from .vqgan import VQGAN


@dataclass
class EncodedRange:
    """Codes of the readable images of one index range, in dataset order."""

    codes: np.ndarray  # (n, h, w) int64
    labels: np.ndarray  # (n,) int64, -1 where the dataset has none
    flipped: np.ndarray | None  # (n, h, w) codes of the mirrored images, or None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) of unreadable inputs


@torch.no_grad()
def encode_range(
    model: VQGAN,
    dataset: Dataset,
    start: int,
    stop: int,
    batch_size: int = 256,
    num_workers: int = 0,
    flip: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> EncodedRange:
    """Encode dataset items [start, stop). `on_batch(n)` is called with the number of inputs consumed."""
    device = next(model.parameters()).device
    h, w = model.config.grid_shapes[0]
    codes, flipped, labels, skipped = [], [], [], []
    loader = DataLoader(
        Subset(dataset, range(start, stop)), batch_size=batch_size, num_workers=num_workers,
        collate_fn=collate_images, pin_memory=device.type == "cuda",
    )
    for batch in loader:
        skipped += batch["skipped"]
        images = batch["image"].to(device, non_blocking=True)
        if images.shape[0]:
            codes.append(model.encode(images).cpu())
            if flip:
                flipped.append(model.encode(images.flip(-1)).cpu())
            labels.append(batch["label"])
        if on_batch is not None:
            on_batch(images.shape[0] + len(batch["skipped"]))
    empty = torch.zeros(0, h, w, dtype=torch.long)
    return EncodedRange(
        codes=torch.cat(codes or [empty]).numpy(),
        labels=torch.cat(labels or [torch.zeros(0, dtype=torch.long)]).numpy(),
        flipped=torch.cat(flipped or [empty]).numpy() if flip else None,
        skipped=[tuple(s) for s in skipped],
    )
