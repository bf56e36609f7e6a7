"""Image batches in a run's resumable order: a run stopped after k batches and restarted sees the same batches.

Which items make each batch comes from the run (`run.batch_order`, pipelines.batch_order.BatchOrder: a seeded
per-epoch permutation, sharded by process); here DataLoader workers decode them. The position (batches
consumed) is the whole state, so a resumed run skips exactly that many batches without reading them.
A streamed split (`--streaming`) has no random access: `StreamBatches` reads each epoch's seeded shuffle of the
stream in order instead, and a resumed run reads past (without decoding) the rows it had consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset


class ResumableBatches:
    """Iterates collated batches of `dataset` in `order` (a run's BatchOrder) from batch `position` on."""

    def __init__(self, dataset: Dataset, order, collate_fn: Callable, num_workers: int = 0, position: int = 0):
        self.dataset, self.order, self.collate_fn, self.num_workers = dataset, order, collate_fn, num_workers
        self.position = position

    def __iter__(self) -> Iterator[dict]:
        while True:
            epoch, first = divmod(self.position, self.order.per_epoch)
            loader = DataLoader(
                self.dataset,
                batch_sampler=self.order.epoch_batches(epoch, first),
                num_workers=self.num_workers,
                collate_fn=self.collate_fn,
                # Own generator: creating a loader must not draw from the global RNG, or a resumed run
                # (which creates its loader mid-epoch) would diverge from an uninterrupted one.
                generator=torch.Generator().manual_seed(self.order.seed + epoch),
            )
            for batch in loader:
                self.position += 1
                yield batch


def random_flip(images: torch.Tensor, seed: int, position: int) -> torch.Tensor:
    """Flip each image left-right with p=0.5, decided by (seed, position) so resumed runs flip alike."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + position)
    flip = torch.rand(images.shape[0], generator=generator) < 0.5  # (B,)
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)


class StreamBatches:
    """ResumableBatches for a StreamedImageDataset: epoch e is the stream shuffled with seed + e (datasets' shard
    order and buffer), split between processes; `per_epoch` batches of `batch_size` per process, from batch
    `position` on. The items are decoded in this process, in order."""

    def __init__(self, dataset, batch_size: int, seed: int, collate_fn: Callable, num_processes: int = 1,
                 process_index: int = 0, position: int = 0, buffer_size: int = 1_000):
        self.dataset, self.batch_size, self.seed, self.collate_fn = dataset, batch_size, seed, collate_fn
        self.num_processes, self.process_index, self.buffer_size = num_processes, process_index, buffer_size
        self.per_epoch = len(dataset) // (batch_size * num_processes)
        if self.per_epoch == 0:
            raise ValueError(f"{len(dataset)} images; expected at least batch_size x processes = "
                             f"{batch_size * num_processes}")
        self.position = position

    def __iter__(self) -> Iterator[dict]:
        while True:
            epoch, first = divmod(self.position, self.per_epoch)
            items = self.dataset.shuffled_items(self.seed, epoch, self.num_processes, self.process_index,
                                                skip=first * self.batch_size, buffer_size=self.buffer_size)
            for _ in range(first, self.per_epoch):
                batch = [item for _, item in zip(range(self.batch_size), items)]
                if len(batch) < self.batch_size:  # the stream held fewer rows than its card said
                    break
                self.position += 1
                yield self.collate_fn(batch)
