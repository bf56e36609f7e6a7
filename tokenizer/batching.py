"""Resumable, shardable batch order: a run stopped after k batches and restarted sees the same batches.

The order of epoch e is a permutation seeded by (seed + e); process p of P takes the p-th slice of each
global batch of P·B items. The position (batches consumed) is the whole state, so a checkpoint stores
one integer and a resumed run skips exactly that many batches without reading them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset


class ResumableBatches:
    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        collate_fn: Callable,
        num_processes: int = 1,
        process_index: int = 0,
        num_workers: int = 0,
        position: int = 0,
    ):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.collate_fn, self.num_workers = collate_fn, num_workers
        self.num_processes, self.process_index = num_processes, process_index
        self.batches_per_epoch = len(dataset) // (batch_size * num_processes)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the dataset has {len(dataset)} images; expected at least batch_size x processes = "
                f"{batch_size * num_processes}"
            )
        self.position = position

    def _epoch_batches(self, epoch: int, first: int) -> list[list[int]]:
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + epoch))
        size, shard = self.batch_size, self.process_index
        starts = [(b * self.num_processes + shard) * size for b in range(first, self.batches_per_epoch)]
        return [order[s : s + size].tolist() for s in starts]

    def __iter__(self) -> Iterator[dict]:
        while True:
            epoch, first = divmod(self.position, self.batches_per_epoch)
            loader = DataLoader(
                self.dataset,
                batch_sampler=self._epoch_batches(epoch, first),
                num_workers=self.num_workers,
                collate_fn=self.collate_fn,
                # Own generator: creating a loader must not draw from the global RNG, or a resumed run
                # (which creates its loader mid-epoch) would diverge from an uninterrupted one.
                generator=torch.Generator().manual_seed(self.seed + epoch),
            )
            for batch in loader:
                self.position += 1
                yield batch


def random_flip(images: torch.Tensor, seed: int, position: int) -> torch.Tensor:
    """Flip each image left-right with p=0.5, decided by (seed, position) so resumed runs flip alike."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + position)
    flip = torch.rand(images.shape[0], generator=generator) < 0.5  # (B,)
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)
