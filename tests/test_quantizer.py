import pytest
import torch
import torch.nn.functional as F

from tokenizer.models.quantizer import QuantizerConfig, VectorQuantizer, code_statistics, kmeans, nearest_code


def make(**kwargs) -> VectorQuantizer:
    defaults = dict(codebook_size=16, code_dim=4, kmeans_init=False, dead_code_threshold=0.0)
    defaults.update(kwargs)
    return VectorQuantizer(QuantizerConfig(**defaults))


def test_indices_are_the_nearest_codes():
    torch.manual_seed(0)
    q = make(use_ema=False).eval()
    z = torch.randn(2, 4, 3, 5)
    out = q(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.cdist(flat, q.codebook.detach()).argmin(1)
    assert out.indices.shape == (2, 3, 5)
    assert torch.equal(out.indices.flatten(), brute)
    assert torch.allclose(out.quantized, q.embed(out.indices), atol=1e-6)


def test_nearest_code_chunking_matches_unchunked():
    torch.manual_seed(0)
    x, codebook = torch.randn(1000, 8), torch.randn(50, 8)
    assert torch.equal(nearest_code(x, codebook, chunk_elements=500), nearest_code(x, codebook))


def test_straight_through_gradient_is_identity():
    torch.manual_seed(0)
    q = make(use_ema=False).train()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    weights = torch.randn(2, 4, 3, 3)
    (q(z).quantized * weights).sum().backward()
    assert torch.allclose(z.grad, weights)


def test_beta_weights_the_commitment_term_only():
    torch.manual_seed(0)
    q = make(use_ema=False, beta=0.25).train()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = q(z)
    codes = q.embed(out.indices).detach()
    expected_mse = F.mse_loss(z, codes)
    assert torch.allclose(out.commitment_loss, expected_mse)
    assert torch.allclose(out.codebook_loss, expected_mse)
    assert torch.allclose(out.loss, out.codebook_loss + 0.25 * out.commitment_loss)
    out.loss.backward()
    # d/dz of β·‖z − sg[e]‖²/N = 2β(z − e)/N: the encoder sees only the β-weighted term.
    assert torch.allclose(z.grad, 0.25 * 2 * (z - codes).detach() / z.numel(), atol=1e-7)
    # The codebook sees only the unweighted codebook term.
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0


def test_ema_update_with_laplace_smoothing_matches_formula():
    torch.manual_seed(0)
    q = make(use_ema=True, ema_decay=0.9, ema_epsilon=1e-3).train()
    count0, sum0 = q.ema_count.clone(), q.ema_sum.clone()
    z = torch.randn(4, 4, 2, 2)
    out = q(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    onehot = F.one_hot(out.indices.flatten(), 16).float()  # (N, K)
    count = 0.9 * count0 + 0.1 * onehot.sum(0)
    sums = 0.9 * sum0 + 0.1 * onehot.t() @ flat
    n = count.sum()
    smoothed = (count + 1e-3) / (n + 16 * 1e-3) * n
    assert torch.allclose(q.ema_count, count)
    assert torch.allclose(q.codebook, sums / smoothed[:, None], atol=1e-6)
    assert out.codebook_loss.item() == 0.0  # an EMA codebook is not learned by gradient


def test_eval_mode_does_not_touch_the_codebook():
    q = make(use_ema=True).eval()
    before = q.codebook.clone()
    q(torch.randn(2, 4, 3, 3))
    assert torch.equal(before, q.codebook)


def test_kmeans_init_places_codes_on_the_data():
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 0, 0, 0], [-5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, -5.0, 0, 0]])
    data = centres.repeat_interleave(50, 0) + 0.01 * torch.randn(200, 4)
    q = make(codebook_size=4, kmeans_init=True, kmeans_iters=20).train()
    assert not bool(q.initialized)
    q(data.reshape(1, 200, 4).permute(0, 2, 1).reshape(1, 4, 20, 10))
    assert bool(q.initialized)
    dist = torch.cdist(centres, q.codebook)
    assert dist.min(1).values.max() < 0.1  # every cluster got a code


def test_kmeans_returns_sizes_summing_to_n():
    torch.manual_seed(0)
    centroids, counts = kmeans(torch.randn(100, 3), 7, 5, spherical=False)
    assert centroids.shape == (7, 3) and counts.sum() == 100


def test_dead_codes_restart_from_encoder_outputs():
    torch.manual_seed(0)
    q = make(codebook_size=8, dead_code_threshold=1.0, use_ema=True).train()
    q.usage_ema.fill_(5.0)
    q.usage_ema[3] = 0.0  # code 3 is dead
    q.codebook[3] = 1000.0  # far away: never chosen unless restarted
    z = torch.randn(1, 4, 4, 4)
    q(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.cdist(q.codebook[3:4], flat).min() < 1.0  # replaced by (an EMA step from) an encoder output
    assert q.codebook[3].abs().max() < 100


def test_l2_normalised_codes_are_unit_vectors():
    torch.manual_seed(0)
    q = make(l2_normalize=True, use_ema=False).train()
    out = q(torch.randn(2, 4, 3, 3) * 7)
    assert torch.allclose(out.quantized.norm(dim=1), torch.ones(2, 3, 3), atol=1e-5)


def test_lookup_runs_in_fp32_under_autocast():
    torch.manual_seed(0)
    q = make(use_ema=False, codebook_size=256).eval()
    z = torch.randn(4, 4, 8, 8)
    reference = q(z).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)
    assert out.quantized.dtype == torch.float32
    assert torch.equal(out.indices, reference)


def test_usage_window_counts_recent_batches():
    q = make(codebook_size=4, usage_window=2, use_ema=False).train()
    with torch.no_grad():
        q.codebook.copy_(torch.eye(4))
    one_code = torch.eye(4)[0].reshape(1, 4, 1, 1).repeat(1, 1, 2, 2)
    q(one_code)
    assert q.window_stats()["codebook_usage"] == pytest.approx(0.25)
    q(torch.eye(4)[1].reshape(1, 4, 1, 1).repeat(1, 1, 2, 2))
    assert q.window_stats()["codebook_usage"] == pytest.approx(0.5)
    q(torch.eye(4)[1].reshape(1, 4, 1, 1).repeat(1, 1, 2, 2))  # batch 1 leaves the window
    assert q.window_stats()["codebook_usage"] == pytest.approx(0.25)


def test_code_statistics_perplexity():
    stats = code_statistics(torch.tensor([5.0, 5.0, 5.0, 5.0, 0.0]))
    assert stats["perplexity"] == pytest.approx(4.0)
    assert stats["codebook_usage"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(codebook_size=1), "codebook_size=1"), (dict(ema_decay=1.5), "ema_decay"), (dict(code_dim=0), "code_dim")],
)
def test_invalid_quantizer_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantizerConfig(**kwargs)


def test_agrees_with_vector_quantize_pytorch_lookup():
    """Same codebook, same inputs: the same indices and the same commitment loss as the reference library."""
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    ref = vqp.VectorQuantize(dim=4, codebook_size=16, commitment_weight=1.0, ema_update=False).train()
    ours = make(use_ema=False).eval()
    with torch.no_grad():
        ours.codebook.copy_(ref._codebook.embed[0])
    z = torch.randn(2, 4, 3, 3)
    _, ref_indices, ref_loss = ref(z.permute(0, 2, 3, 1).reshape(2, 9, 4))
    out = ours(z)
    assert torch.equal(out.indices.reshape(2, 9), ref_indices)
    assert torch.allclose(out.commitment_loss, ref_loss, atol=1e-6)


def _perplexity_under_drift(decay: float) -> dict[str, float]:
    """An encoder whose outputs move and spread every step, as at a high learning rate early in training."""
    torch.manual_seed(0)
    quantizer = VectorQuantizer(QuantizerConfig(codebook_size=64, code_dim=4, ema_decay=decay, usage_window=5))
    quantizer.train()
    direction = F.normalize(torch.randn(4), dim=0)
    for step in range(60):
        latents = torch.randn(8, 4, 8, 8) * (1 + 0.05 * step) + 0.1 * step * direction[None, :, None, None]
        quantizer(latents)
    return quantizer.window_stats()


def test_a_fast_codebook_ema_keeps_up_with_a_drifting_encoder():
    # Why the small-32px preset uses decay 0.9: at 0.99 the codebook trails the encoder and most codes fall idle
    # (the emoji runs' perplexity went from 200 to ~35 of 256 codes in the first 150 steps).
    fast, slow = _perplexity_under_drift(0.9), _perplexity_under_drift(0.99)
    assert fast["codebook_usage"] == 1.0 and fast["perplexity"] > 0.6 * 64
    assert slow["perplexity"] < 0.4 * 64
