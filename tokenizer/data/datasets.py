"""The image datasets every source becomes: items are `{"image": (3,R,R) float in [-1,1], "label": int, "name": str}`.
An item that cannot be decoded comes back as `{"skipped": name, "reason": str}` instead of raising, so one bad file
never ends a long training run; `collate_images` drops such items from the batch and lists them, and
`SkipCounter` tallies them in the main process (workers cannot share a counter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from .images import DECODE_ERRORS, ImageTransform, UnreadableImage, decode_bytes

class ImageDataset(Dataset):
    """Base class: subclasses implement `_load_rgb(i) -> PIL RGB image` and `_name(i)`."""

    def __init__(self, transform: ImageTransform | None, labels: np.ndarray | None,
                 class_names: list[str], source: str):
        self.transform = transform if transform is not None else ImageTransform()
        self.labels = labels  # (N,) int64, or None when the data set has no labels
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.source = source

    def __len__(self) -> int:
        raise NotImplementedError

    def _name(self, index: int) -> str:
        raise NotImplementedError

    def _load_rgb(self, index: int) -> Image.Image:
        raise NotImplementedError

    def _load_uint8(self, index: int) -> torch.Tensor:
        return TF.pil_to_tensor(self._load_rgb(index))  # (3, H, W) uint8

    def content_key(self) -> str:
        """What these images are, for caches of anything computed from them (Inception features): a hash that
        changes when the images, their order or their labels do, wherever they live."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return self.make_item(self._name(index), lambda: self._load_uint8(index),
                              lambda: int(self.labels[index]) if self.labels is not None else -1)

    def make_item(self, name: str, load_pixels, label) -> dict:
        """An item from `load_pixels() -> (3, H, W) uint8` and `label() -> int`, or the skip record."""
        try:
            pixels = load_pixels()
        except DECODE_ERRORS as e:
            # Decoding failures are data problems, not bugs: report and go on.
            return {"skipped": name, "reason": _reason(e), "resolution": self.transform.resolution}
        return {"image": self.transform(pixels), "label": label(), "name": name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source}, {len(self)} images, {self.num_classes} classes)"


def _reason(e: BaseException) -> str:
    if isinstance(e, UnreadableImage):
        return str(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class FileImageDataset(ImageDataset):
    """Image files on disk, with optional integer labels."""

    def __init__(self, paths: list[Path], names: list[str], labels: np.ndarray | None = None,
                 class_names: list[str] = (), transform: ImageTransform | None = None, source: str = ""):
        super().__init__(transform, labels, class_names, source or f"{len(paths)} files")
        self.paths = [Path(p) for p in paths]
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.paths)

    def _name(self, index: int) -> str:
        return self.names[index]

    def _load_rgb(self, index: int) -> Image.Image:
        return decode_bytes(self.paths[index].read_bytes())

    def content_key(self) -> str:
        """The file list with each file's size and modification time (a file rewritten in place changes it)."""
        digest = hashlib.sha256()
        for name, path in zip(self.names, self.paths):
            stat = path.stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        if self.labels is not None:
            digest.update(self.labels.tobytes())
        return digest.hexdigest()


class ArrayImageDataset(ImageDataset):
    """Greyscale uint8 images held in one (N,H,W) array (Fashion-MNIST): no decoding, nothing to skip."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, class_names: list[str] = (),
                 transform: ImageTransform | None = None, source: str = "", name_prefix: str = ""):
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be a uint8 (N,H,W) array, got {images.dtype} {images.shape}")
        super().__init__(transform, labels, class_names, source or f"array {images.shape}")
        self.images = images
        self.name_prefix = name_prefix

    def __len__(self) -> int:
        return len(self.images)

    def _name(self, index: int) -> str:
        return f"{self.name_prefix}{index:05d}"

    def _load_uint8(self, index: int) -> torch.Tensor:
        grey = torch.from_numpy(self.images[index])  # (H, W)
        return grey.unsqueeze(0).expand(3, -1, -1)  # (3, H, W), a view: no copy

    def content_key(self) -> str:
        """A hash of the pixels and labels themselves (47 MB for Fashion-MNIST's training split: a fraction of a
        second)."""
        digest = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
        if self.labels is not None:
            digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()


class HFImageDataset(ImageDataset):
    """A `datasets.Dataset` with an Image column; images are decoded here so bad ones are skipped."""

    def __init__(self, hf_dataset, transform: ImageTransform | None = None, image_column: str | None = None,
                 label_column: str | None = None, source: str = "hf dataset", name_prefix: str = ""):
        import datasets

        features = hf_dataset.features
        image_column = image_column or _find_image_column(features)
        if label_column is None:
            label_column = next((c for c in ("label", "labels") if isinstance(features.get(c), datasets.ClassLabel)),
                                None)
        class_names = features[label_column].names if label_column is not None else []
        labels = None
        if label_column is not None:  # numpy format honours any select()/shuffle() index mapping
            labels = np.asarray(hf_dataset.with_format("numpy")[label_column], dtype=np.int64)
        super().__init__(transform, labels, class_names, source)
        # decode=False: rows give {"bytes", "path"} so a corrupt image is our skip, not a crash in datasets.
        self.hf = hf_dataset.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
        self.image_column = image_column
        self.label_column = label_column
        self.name_prefix = name_prefix

    def __len__(self) -> int:
        return len(self.hf)

    def _name(self, index: int) -> str:
        return f"{self.name_prefix}{index}"

    def content_key(self) -> str:
        """datasets' own fingerprint of the table (its data files and every transform applied to them)."""
        return f"{self.hf._fingerprint}:{self.image_column}:{self.label_column}"

    def _load_rgb(self, index: int) -> Image.Image:
        return _entry_image(self.hf[index][self.image_column])


class StreamedImageDataset(ImageDataset):
    """A `datasets` streaming split (IterableDataset: nothing downloaded before it is read) read in order: item i
    is the i-th row of the stream. Reading forward is cheap (rows before i are passed over undecoded); reading
    backwards starts the stream again, so take it in order (tokenizing does: its shards are consecutive ranges).
    `length`: the rows it holds (the split's size from the data set's card, or max_images)."""

    def __init__(self, stream, length: int, transform: ImageTransform | None = None, source: str = "stream",
                 name_prefix: str = ""):
        import datasets

        features = stream.features
        if features is None:
            raise ValueError(f"{source}: the stream does not declare its features, so its image column is unknown")
        image_column = _find_image_column(features)
        label_column = next((c for c in ("label", "labels") if isinstance(features.get(c), datasets.ClassLabel)), None)
        super().__init__(transform, _RowLabels(self), features[label_column].names if label_column else [], source)
        if label_column is None:
            self.labels = None
        columns = [image_column] + ([label_column] if label_column else [])
        self.stream = stream.select_columns(columns).cast_column(image_column, datasets.Image(decode=False))
        self.image_column, self.label_column = image_column, label_column
        self.length, self.name_prefix = length, name_prefix
        self._rows, self._next, self._row = None, 0, None

    def __len__(self) -> int:
        return self.length

    def _name(self, index: int) -> str:
        return f"{self.name_prefix}{index}"

    def content_key(self) -> str:
        return f"stream:{self.source}:{self.length}:{self.image_column}:{self.label_column}"

    def row(self, index: int) -> dict:
        """Row `index` of the stream (the one after the last read is the cheap case)."""
        if self._row is not None and self._next == index + 1:
            return self._row
        if self._rows is None or index < self._next:  # (re)start the stream
            self._rows, self._next = iter(self.stream), 0
        while self._next <= index:
            try:
                self._row = next(self._rows)
            except StopIteration:
                raise IndexError(f"{self.source} ended after {self._next} rows; expected {self.length}") from None
            self._next += 1
        return self._row

    def _load_rgb(self, index: int) -> Image.Image:
        return _entry_image(self.row(index)[self.image_column])

    def __getstate__(self) -> dict:  # a DataLoader worker starts its own stream
        return {**self.__dict__, "_rows": None, "_next": 0, "_row": None}

    def shuffled_items(self, seed: int, epoch: int, num_processes: int = 1, process_index: int = 0,
                       skip: int = 0, buffer_size: int = 1_000) -> Iterator[dict]:
        """Epoch `epoch` of the stream for training: shuffled with datasets' seeded shard order and buffer
        (the same order for the same seed and epoch), split between processes (split_dataset_by_node), this
        process's items from its `skip`-th on (the rows before are read, not decoded)."""
        from datasets.distributed import split_dataset_by_node

        stream = self.stream.shuffle(seed=seed, buffer_size=buffer_size)
        stream.set_epoch(epoch)
        stream = split_dataset_by_node(stream, rank=process_index, world_size=num_processes)
        for i, row in enumerate(stream.skip(skip), start=skip):
            label = int(row[self.label_column]) if self.label_column else -1
            yield self.make_item(f"{self.name_prefix}epoch{epoch}/process{process_index}/{i}",
                                 lambda row=row: TF.pil_to_tensor(_entry_image(row[self.image_column])),
                                 lambda label=label: label)


def _entry_image(entry: dict | None) -> Image.Image:
    """An undecoded `datasets.Image` value ({"bytes", "path"}) as an RGB picture."""
    if entry is None:
        raise UnreadableImage("no image data")
    if entry.get("bytes") is not None:
        return decode_bytes(entry["bytes"])
    if entry.get("path"):
        return decode_bytes(Path(entry["path"]).read_bytes())
    raise UnreadableImage("no image data (neither bytes nor path)")


class _RowLabels:
    """`labels[i]` of a streamed data set: the label column of row i, read with the row."""

    def __init__(self, dataset: StreamedImageDataset):
        self.dataset = dataset

    def __getitem__(self, index: int) -> int:
        return int(self.dataset.row(index)[self.dataset.label_column])


def _find_image_column(features) -> str:
    import datasets

    image_columns = [name for name, f in features.items() if isinstance(f, datasets.Image)]
    for preferred in ("image", "img"):
        if preferred in image_columns:
            return preferred
    if not image_columns:
        described = ", ".join(f"{name}: {type(f).__name__}" for name, f in features.items())
        raise ValueError(f"no image column (a datasets.Image feature) in the dataset; columns are {described}")
    return image_columns[0]


# ----------------------------------------------------------------------------------------------------
# Sources


def collate_images(items: list[dict]) -> dict:
    """Stacks good items: {"image": (B,3,R,R), "label": (B,), "name": [B], "skipped": [(name, reason)]}."""
    good = [it for it in items if "image" in it]
    skipped = [(it["skipped"], it["reason"]) for it in items if "skipped" in it]
    if good:
        images = torch.stack([it["image"] for it in good])  # (B, 3, R, R)
    else:
        r = next((it.get("resolution", 0) for it in items), 0)
        images = torch.empty(0, 3, r, r)  # an all-bad batch keeps the image shape
    labels = torch.tensor([it["label"] for it in good], dtype=torch.long)  # (B,)
    return {"image": images, "label": labels, "name": [it["name"] for it in good], "skipped": skipped}


class SkipCounter:
    """Counts skipped items across batches (in the main process) and keeps the first few for the report."""

    def __init__(self, keep: int = 100):
        self.count = 0
        self.keep = keep
        self.examples: list[tuple[str, str]] = []  # first `keep` (name, reason) pairs

    def update(self, skipped: list[tuple[str, str]]) -> None:
        self.count += len(skipped)
        room = self.keep - len(self.examples)
        if room > 0:
            self.examples += [tuple(s) for s in skipped[:room]]

    def first(self, n: int = 5) -> list[str]:
        return [name for name, _ in self.examples[:n]]

    def summary(self, n: int = 5) -> str:
        noun = "image" if self.count == 1 else "images"
        text = f"skipped {self.count} unreadable {noun}"
        if self.examples:
            text += " (first: " + ", ".join(f"{name}: {reason}" for name, reason in self.examples[:n]) + ")"
        return text

    def state_dict(self) -> dict:
        """JSON-ready state, so a resumed training run keeps reporting the whole run's skips."""
        return {"count": self.count, "examples": [list(e) for e in self.examples]}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self.examples = [tuple(e) for e in state["examples"]][: self.keep]
