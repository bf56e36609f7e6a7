"""One image as the tokenizer takes it: decoded from bytes (an unreadable one raises UnreadableImage), converted to
RGB (alpha composited on white, high bit depths scaled down) and resized to a (3, R, R) float tensor in [-1, 1]."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

RESIZE_MODES = ("crop", "pad")
# What PIL raises on bad bytes: OSError covers UnidentifiedImageError and truncation; some plugins raise
# SyntaxError ("broken PNG file"), struct.error or zlib.error on damaged headers and streams.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                 Image.DecompressionBombError)


MAX_RESOLUTION = 8192  # far above any published tokenizer (1024 px); beyond it a typo, not an image size


def check_transform_args(resolution: int, resize_mode: str) -> None:
    if not isinstance(resolution, int) or not 0 < resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be a positive int of at most {MAX_RESOLUTION}, got {resolution!r}")
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
        check_transform_args(resolution, resize_mode)
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


def decode_bytes(data: bytes) -> Image.Image:
    """Decodes image bytes fully and converts to RGB; load() is here so a truncated file raises now."""
    if len(data) == 0:
        raise UnreadableImage("empty file")
    img = Image.open(io.BytesIO(data))  # in-memory: no file handle to close
    img.load()
    return image_to_rgb(img)


# ----------------------------------------------------------------------------------------------------
# Datasets
