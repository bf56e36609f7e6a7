"""FID, KID and precision/recall between two image sets, with the TF-Inception as the feature network.

One `InceptionDistances` serves the tokenizer's rFID (originals against reconstructions) and generation
FID/KID/precision/recall (a split against samples). Either side takes images (B, C, H, W) in [-1, 1], which
go through Inception once, or features (N, D) already extracted (a split's cached features), which pass
through. FID and KID are torchmetrics'; precision and recall (Kynkäänniemi et al. 2019) have no torchmetrics
version and are `precision_recall` below.
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


def _kth_neighbour_radii(features: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of `features` (N, D) to its k-th nearest other row: (N,)."""
    radii = []
    for start in range(0, features.shape[0], chunk):
        dist = torch.cdist(features[start : start + chunk], features)  # (chunk, N), the row itself at 0
        radii.append(dist.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _covered(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """Fraction of `queries` (M, D) inside at least one ball (centres (N, D), radii (N,))."""
    inside = 0
    for start in range(0, queries.shape[0], chunk):
        dist = torch.cdist(queries[start : start + chunk], centres)  # (chunk, N)
        inside += int((dist <= radii[None, :]).any(dim=1).sum())
    return inside / queries.shape[0]


@torch.no_grad()
def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk: int = 1024) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of feature sets real (N, D) and fake (M, D).

    Each set's manifold is the union of balls around its points reaching their k-th nearest neighbour.
    precision: the fraction of fake points inside the real manifold (are samples realistic?);
    recall: the fraction of real points inside the fake manifold (is the data's variety covered?).
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features of shapes {tuple(real.shape)} and {tuple(fake.shape)}: expected (N, D), (M, D)")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"{real.shape[0]} real and {fake.shape[0]} fake features: expected more than k={k} of each")
    real, fake = real.double(), fake.double()  # distances of 2,048-dim features keep their order in float64
    real_radii = _kth_neighbour_radii(real, k, chunk)
    fake_radii = _kth_neighbour_radii(fake, k, chunk)
    return {"precision": _covered(fake, real, real_radii, chunk), "recall": _covered(real, fake, fake_radii, chunk)}


class InceptionDistances:
    """FID, and optionally KID (mean and spread over random subsets) and precision/recall, between real and fake
    sets fed batch by batch. Inception runs once per batch, whichever metrics are on; real statistics survive
    `reset_fake()`.

    network: any module mapping images to (B, D) with an int `num_features` (default: the TF-FID Inception).
    kid_subset_size: the most images per KID subset; fewer when either set is small (see `compute`).
    seed: seeds the KID subsets, so a result is reproducible; the caller's random state is left untouched.
    precision_recall_k: the k of precision/recall's k-th neighbour radii; None leaves them out (they keep every
    feature, as KID does).
    """

    def __init__(self, network: nn.Module | None = None, kid: bool = True, kid_subsets: int = 100,
                 kid_subset_size: int = 1000, seed: int = 0, precision_recall_k: int | None = 3) -> None:
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
        self.precision_recall_k = precision_recall_k
        self.kept: dict[bool, list[torch.Tensor]] = {True: [], False: []}  # real?, for precision/recall

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
        if self.precision_recall_k is not None:
            self.kept[real].append(features.float().cpu())

    def compute(self) -> dict[str, float]:
        """{"fid"}, with KID on {"kid_mean", "kid_std"}, with precision/recall on {"precision", "recall"}, of
        everything added (at least 2 real and 2 fake; precision/recall need more than k)."""
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
        if self.precision_recall_k is not None:
            result.update(precision_recall(torch.cat(self.kept[True]), torch.cat(self.kept[False]),
                                           k=self.precision_recall_k))
        return result

    def reset_fake(self) -> None:
        """Forget generated images; keep the real statistics and features."""
        self.fid.reset()
        if self.kid is not None:
            self.kid.reset()
        self.kept[False] = []
