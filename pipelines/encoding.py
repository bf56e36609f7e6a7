"""Encode a range of a dataset into code grids, batch by batch (the tokenize command's inner loop)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from tokenizer.data import collate_images
from tokenizer.models.loading import Tokenizer


@dataclass
class EncodedRange:
    """Codes of the readable images of one index range, in dataset order; one array per level, coarsest first."""

    codes: list[np.ndarray]  # per level (n, h, w) int64
    labels: np.ndarray  # (n,) int64, -1 where the dataset has none
    flipped: list[np.ndarray] | None  # per level (n, h, w) codes of the mirrored images, or None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) of unreadable inputs


@torch.no_grad()
def encode_range(
    model: Tokenizer,
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
    levels = len(model.config.grid_shapes)
    codes, flipped, labels, skipped = [[] for _ in range(levels)], [[] for _ in range(levels)], [], []
    loader = DataLoader(
        Subset(dataset, range(start, stop)), batch_size=batch_size, num_workers=num_workers,
        collate_fn=collate_images, pin_memory=device.type == "cuda",
    )
    for batch in loader:
        skipped += batch["skipped"]
        images = batch["image"].to(device, non_blocking=True)
        if images.shape[0]:
            for level, grid in enumerate(model.encode_levels(images)):
                codes[level].append(grid.cpu())
            if flip:
                for level, grid in enumerate(model.encode_levels(images.flip(-1))):
                    flipped[level].append(grid.cpu())
            labels.append(batch["label"])
        if on_batch is not None:
            on_batch(images.shape[0] + len(batch["skipped"]))

    def stacked(grids: list[list[torch.Tensor]]) -> list[np.ndarray]:
        return [torch.cat(level or [torch.zeros(0, h, w, dtype=torch.long)]).numpy()
                for level, (h, w) in zip(grids, model.config.grid_shapes)]

    return EncodedRange(
        codes=stacked(codes),
        labels=torch.cat(labels or [torch.zeros(0, dtype=torch.long)]).numpy(),
        flipped=stacked(flipped) if flip else None,
        skipped=[tuple(s) for s in skipped],
    )
