"""The order in which a training run reads its data, resumable and sharded, for both stages' loops.

Epoch e's order is a permutation seeded by (seed + e); process p of P takes the p-th slice of each global batch
of P·B items. The position (batches consumed) is the whole state, so a checkpoint stores one integer and a
resumed run skips exactly that many batches without reading them.
"""

from __future__ import annotations

import torch


class BatchOrder:
    """Item indices of every batch of a run over `length` items, `batch_size` per process."""

    def __init__(self, length: int, batch_size: int, seed: int, num_processes: int = 1, process_index: int = 0,
                 items: str = "items"):
        self.batch_size, self.seed = batch_size, seed
        self.num_processes, self.process_index = num_processes, process_index
        self.length, self.per_epoch = length, length // (batch_size * num_processes)
        if self.per_epoch == 0:
            raise ValueError(f"{length} {items}; expected at least batch_size x processes = {batch_size * num_processes}")

    def epoch_batches(self, epoch: int, first: int = 0) -> list[list[int]]:
        """This process's batches of `epoch`, from its `first` batch on."""
        order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + epoch))
        size = self.batch_size
        starts = [(b * self.num_processes + self.process_index) * size for b in range(first, self.per_epoch)]
        return [order[s : s + size].tolist() for s in starts]

    def batch(self, position: int) -> list[int]:
        """The items of this process's batch number `position` (counted over the whole run)."""
        epoch, b = divmod(position, self.per_epoch)
        return self.epoch_batches(epoch, b)[0]
