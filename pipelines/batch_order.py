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
        order = self._order(epoch)
        return [order[s : s + self.batch_size].tolist() for s in map(self._start, range(first, self.per_epoch))]

    def batch(self, position: int) -> list[int]:
        """The items of this process's batch number `position` (counted over the whole run)."""
        epoch, b = divmod(position, self.per_epoch)
        start = self._start(b)
        return self._order(epoch)[start : start + self.batch_size].tolist()

    def _order(self, epoch: int) -> torch.Tensor:
        """Epoch `epoch`'s permutation of all items (length,)."""
        return torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + epoch))

    def _start(self, b: int) -> int:
        """Where this process's share of global batch `b` starts in the epoch's order."""
        return (b * self.num_processes + self.process_index) * self.batch_size
