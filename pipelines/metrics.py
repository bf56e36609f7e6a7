"""FID and KID between two image sets, on torchmetrics, with the TF-Inception as the feature network.

One `InceptionDistances` serves the tokenizer's rFID (originals against reconstructions) and generation
FID/KID (a split against samples). Either side takes images (B, C, H, W) in [-1, 1], which go through
Inception once, or features (N, D) already extracted (a split's cached features), which pass through.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from .inception import InceptionFeatures


class FeaturesOrImages(nn.Module):
    """The feature module handed to torchmetrics: images (B, C, H, W) -> `network(images)`, features (N, D)
    -> themselves. Returns (N, D) float64: FID sums in float64 anyway, and KID's cubic kernel over 2,048
    dimensions keeps more digits (the values then match the float64 reference formulas)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.num_features = int(network.num_features)  # read by torchmetrics instead of running a dummy image

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            if x.shape[1] != self.num_features:
                raise ValueError(f"features of shape {tuple(x.shape)}: expected (N, {self.num_features})")
            return x.double()
        if x.ndim != 4:
            raise ValueError(f"input of shape {tuple(x.shape)}: expected images (B, C, H, W) or features "
                             f"(N, {self.num_features})")
        return self.network(x).double()  # (B, D)


class InceptionDistances:
    """FID, and optionally KID (mean and spread over random subsets), between real and fake sets fed batch by
    batch. Inception runs once per batch, whichever metrics are on; real statistics survive `reset_fake()`.

    network: any module mapping images to (B, D) with an int `num_features` (default: the TF-FID Inception).
    kid_subset_size: the most images per KID subset; fewer when either set is small (see `compute`).
    seed: seeds the KID subsets, so a result is reproducible; the caller's random state is left untouched.
    """

    def __init__(self, network: nn.Module | None = None, kid: bool = True, kid_subsets: int = 100,
                 kid_subset_size: int = 1000, seed: int = 0) -> None:
        if kid_subset_size < 2:
            raise ValueError(f"kid_subset_size={kid_subset_size}: expected at least 2")
        self.features = FeaturesOrImages(network if network is not None else InceptionFeatures())
        self.fid = FrechetInceptionDistance(feature=self.features, reset_real_features=False)
        self.kid = None
        if kid:
            with warnings.catch_warnings():  # "KID saves all extracted features": it must, to draw subsets
                warnings.simplefilter("ignore", UserWarning)
                self.kid = KernelInceptionDistance(feature=self.features, subsets=kid_subsets,
                                                   subset_size=kid_subset_size, reset_real_features=False)
        self.kid_subset_size = kid_subset_size
        self.seed = seed

    @property
    def num_real(self) -> int:
        return int(self.fid.real_features_num_samples)

    @property
    def num_fake(self) -> int:
        return int(self.fid.fake_features_num_samples)

    def to(self, device: torch.device | str) -> InceptionDistances:
        self.fid = self.fid.to(device)  # moves the shared feature module too
        if self.kid is not None:
            self.kid = self.kid.to(device)
        return self

    def update_real(self, images_or_features: torch.Tensor) -> None:
        """Add real images in [-1, 1], (B, 3 or 1, H, W), or their features (N, D)."""
        self._update(images_or_features, real=True)

    def update_fake(self, images_or_features: torch.Tensor) -> None:
        """Add generated images in [-1, 1], (B, 3 or 1, H, W), or their features (N, D)."""
        self._update(images_or_features, real=False)

    def _update(self, x: torch.Tensor, real: bool) -> None:
        features = self.features(x.to(self.fid.device))  # (N, D): both metrics then pass it through
        self.fid.update(features, real=real)
        if self.kid is not None:
            self.kid.update(features, real=real)

    def compute(self) -> dict[str, float]:
        """{"fid"} and, with KID on, {"kid_mean", "kid_std"} of everything added (at least 2 real, 2 fake)."""
        if self.num_real < 2 or self.num_fake < 2:
            raise ValueError(f"{self.num_real} real and {self.num_fake} fake images: expected at least 2 of each")
        result = {"fid": float(self.fid.compute())}
        if self.kid is not None:
            # Subsets of at most half the images: subsets of every image would all be the same set, and their
            # spread (kid_std) would read 0 whatever the samples. The estimate is unbiased at any subset size.
            self.kid.subset_size = max(2, min(self.kid_subset_size, self.num_real // 2, self.num_fake // 2))
            # torchmetrics draws the subsets with torch.randperm(n) on the global CPU generator: seed it in a fork.
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(self.seed)
                kid_mean, kid_std = self.kid.compute()
            result.update(kid_mean=float(kid_mean), kid_std=float(kid_std))
        return result

    def reset_fake(self) -> None:
        """Forget generated images; keep the real statistics and features."""
        self.fid.reset()
        if self.kid is not None:
            self.kid.reset()
