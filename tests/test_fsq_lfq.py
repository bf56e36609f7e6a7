"""FSQ and LFQ beside the VQ: their maths against brute force, their configs, and the whole flow through them
(training, saved folders, index files, both priors, a two-level tokenizer, evaluation's usage)."""

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from pipelines import ImageGenerationPipeline, TokenizeDatasetConfig, tokenize_dataset
from pipelines.evaluation import evaluate_tokenizer
from pipelines.training import train_prior, train_tokenizer
from prior import GPTPrior, PixelCNNPrior
from tests.conftest import tiny_vqgan_config, tiny_vqvae2_config
from tests.test_prior_training import tiny_config as tiny_prior_config
from tests.test_training import image_folder, tiny_train_config  # noqa: F401 (image_folder is a fixture)
from tokenizer import VQGAN, VQVAE2, QuantizerConfig
from tokenizer.data import ImageDataConfig
from tokenizer.models.fsq import FiniteScalarQuantizer
from tokenizer.models.lfq import LookupFreeQuantizer
from tokenizer.models.quantizers import build_quantizer


def latents(config: QuantizerConfig, batch: int = 4, side: int = 6, scale: float = 2.0, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return (torch.randn(batch, config.code_dim, side, side) * scale).requires_grad_()


# --- FSQ ------------------------------------------------------------------------------------------------------


def test_fsq_codes_are_the_grid_and_indices_round_trip():
    config = QuantizerConfig(kind="fsq", fsq_levels=(8, 5, 3))
    quantizer = build_quantizer(config).train()
    assert isinstance(quantizer, FiniteScalarQuantizer) and config.codebook_size == 120 and config.code_dim == 3
    grid = quantizer.embed(torch.arange(120).view(1, 120, 1)).squeeze(-1)[0].t()  # (120, 3)
    assert len({tuple(row.tolist()) for row in grid}) == 120  # every index its own grid point
    for dim, levels in enumerate((8, 5, 3)):  # each dimension takes exactly its levels' values, in [-1, 1]
        values = sorted(set(grid[:, dim].tolist()))
        assert len(values) == levels and -1 <= values[0] and values[-1] <= 1
    out = quantizer(latents(config, batch=16, scale=1.0))
    assert out.indices.shape == (16, 6, 6) and int(out.indices.min()) >= 0 and int(out.indices.max()) < 120
    assert torch.equal(quantizer.embed(out.indices), out.quantized.detach())
    assert float(out.loss) == 0.0
    assert len(torch.unique(out.indices)) > 90  # unit-scale latents reach most of the grid


def test_fsq_rounds_to_the_nearest_level_of_the_bounded_latent_with_a_straight_through_gradient():
    config = QuantizerConfig(kind="fsq", fsq_levels=(5, 4))
    quantizer = build_quantizer(config)
    z = latents(config)
    out = quantizer(z)
    bounded = quantizer._bound(z.detach().permute(0, 2, 3, 1).reshape(-1, 2))
    expected = bounded.round() / torch.tensor([2.0, 2.0])
    assert torch.allclose(out.quantized.detach().permute(0, 2, 3, 1).reshape(-1, 2), expected)
    out.quantized.sum().backward()
    # the bounded value's derivative, as if rounding were the identity
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 2).requires_grad_()
    (quantizer._bound(flat) / torch.tensor([2.0, 2.0])).sum().backward()
    assert torch.allclose(z.grad.permute(0, 2, 3, 1).reshape(-1, 2), flat.grad)


# --- LFQ ------------------------------------------------------------------------------------------------------


def test_lfq_index_is_the_binary_number_of_the_signs():
    config = QuantizerConfig(kind="lfq", code_dim=4)
    quantizer = build_quantizer(config)
    assert isinstance(quantizer, LookupFreeQuantizer) and config.codebook_size == 16
    z = torch.tensor([0.3, -0.2, 0.7, -1.0]).view(1, 4, 1, 1)  # bits 1, 0, 1, 0 → 1 + 4 = 5
    out = quantizer(z)
    assert int(out.indices) == 5
    assert torch.equal(out.quantized.flatten(), torch.tensor([1.0, -1.0, 1.0, -1.0]))
    codes = quantizer.embed(torch.arange(16).view(1, 16, 1))  # (1, 4, 16, 1)
    assert torch.equal(quantizer(codes).indices.flatten(), torch.arange(16))


def brute_force_entropy(flat: torch.Tensor, temperature: float, gamma: float) -> torch.Tensor:
    """The entropy loss over the explicit codebook {-1, 1}^d: softmax(-‖z − c‖² / (2T))."""
    d = flat.shape[1]
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)))
    q = F.softmax(-torch.cdist(flat, corners).pow(2) / (2 * temperature), dim=1)  # (N, 2^d)
    per_latent = -(q * q.clamp(min=1e-12).log()).sum(1).mean()
    mean_q = q.mean(0)
    return per_latent - gamma * -(mean_q * mean_q.clamp(min=1e-12).log()).sum()


@pytest.mark.parametrize("temperature, gamma", [(0.5, 1.0), (0.05, 0.5)])
def test_lfq_entropy_loss_agrees_with_the_explicit_codebook(temperature, gamma):
    config = QuantizerConfig(kind="lfq", code_dim=5, lfq_temperature=temperature, lfq_diversity_gamma=gamma)
    quantizer = build_quantizer(config)
    torch.manual_seed(0)
    flat = torch.randn(300, 5) * 0.3
    assert torch.allclose(quantizer.entropy_loss(flat), brute_force_entropy(flat, temperature, gamma), atol=1e-4)


def test_lfq_entropy_loss_spreads_collapsed_latents_over_the_codes():
    """Latents all near one corner use one code; the entropy loss alone moves them onto most of the 64."""
    config = QuantizerConfig(kind="lfq", code_dim=6, lfq_temperature=0.1)
    quantizer = build_quantizer(config).train()
    torch.manual_seed(0)
    z = torch.nn.Parameter(0.5 + 0.05 * torch.randn(1, 6, 16, 16))
    before = len(torch.unique(quantizer(z).indices))
    optimizer = torch.optim.Adam([z], lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        quantizer(z).codebook_loss.backward()
        optimizer.step()
    assert before == 1 and len(torch.unique(quantizer(z).indices)) >= 40


def test_lfq_loss_is_entropy_plus_weighted_commitment_and_eval_skips_entropy():
    config = QuantizerConfig(kind="lfq", code_dim=3, beta=0.5, lfq_entropy_weight=0.2)
    quantizer = build_quantizer(config).train()
    z = latents(config, scale=0.5)
    out = quantizer(z)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.allclose(out.commitment_loss, F.mse_loss(flat, flat.sign()))
    assert torch.allclose(out.codebook_loss, 0.2 * quantizer.entropy_loss(flat), atol=1e-6)
    assert torch.allclose(out.loss, out.codebook_loss + 0.5 * out.commitment_loss)
    assert float(quantizer.eval()(z).codebook_loss) == 0.0


# --- configs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, size, dim", [
    (dict(kind="fsq"), 240, 3),  # Mentzer et al.'s levels for 2^8: 8, 6, 5
    (dict(kind="fsq", codebook_size=1024), 1000, 4),
    (dict(kind="fsq", fsq_levels=(7, 5, 5, 5, 5)), 4375, 5),
    (dict(kind="lfq"), 256, 8),
    (dict(kind="lfq", codebook_size=1024), 1024, 10),
    (dict(kind="lfq", code_dim=6), 64, 6),
])
def test_sizes_follow_the_quantizer(kwargs, size, dim):
    config = QuantizerConfig(**kwargs)
    assert (config.codebook_size, config.code_dim) == (size, dim)
    assert QuantizerConfig(**dataclasses.asdict(config)) == config  # a saved config reloads as it was


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="rvq"), "quantizer='rvq'"),
    (dict(kind="vq", fsq_levels=(8, 5)), "fsq_levels"),
    (dict(kind="fsq", codebook_size=300), "codebook_size=300"),
    (dict(kind="fsq", fsq_levels=(8, 1)), "at least 2"),
    (dict(kind="fsq", fsq_levels=(8, 5), code_dim=3), "code_dim=3"),
    (dict(kind="lfq", codebook_size=1024, code_dim=6), "2\\^code_dim"),
    (dict(kind="lfq", code_dim=20), "code_dim=20"),
    (dict(kind="lfq", lfq_temperature=0.0), "lfq_temperature"),
])
def test_invalid_quantizer_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantizerConfig(**kwargs)


def test_cli_takes_the_quantizer_flags():
    from pipelines.cli import config_parser, parse_config
    from tokenizer.training import TrainTokenizerConfig

    config, _ = parse_config(TrainTokenizerConfig, config_parser(TrainTokenizerConfig), [
        "--output_dir", "out", "--dataset", "emoji", "--quantizer", "fsq", "--fsq_levels", "8,5,5,5",
        "--top_quantizer", "lfq", "--top_code_dim", "6"])
    assert config.model.quantizer.kind == "fsq" and config.model.quantizer.codebook_size == 1000
    assert config.model.top_quantizer.kind == "lfq" and config.model.top_quantizer.codebook_size == 64


def test_a_vq_fingerprint_ignores_the_new_fields_and_another_quantizer_changes_it():
    vq, fsq = VQGAN(tiny_vqgan_config()), VQGAN(tiny_vqgan_config(kind="fsq", fsq_levels=(4, 4, 2), codebook_size=32,
                                                                   code_dim=3))
    assert "kind" not in vq.config.fingerprint_dict()["quantizer"]
    assert fsq.config.fingerprint_dict()["quantizer"]["kind"] == "fsq" and vq.fingerprint() != fsq.fingerprint()


# --- the whole flow -------------------------------------------------------------------------------------------


# LFQ's one-grid path is the same module as its top-grid one, so two flows cover both quantizers and both levels.
FLOWS = {
    "vqgan-fsq": lambda: tiny_vqgan_config(kind="fsq", fsq_levels=(4, 3, 3), codebook_size=36, code_dim=3,
                                           kmeans_init=True),
    "vqvae2-lfq-top-fsq-bottom": lambda: tiny_vqvae2_config(
        top_quantizer=QuantizerConfig(kind="lfq", code_dim=4, codebook_size=16),
        quantizer=QuantizerConfig(kind="fsq", fsq_levels=(5, 3, 2), codebook_size=30, code_dim=3)),
}


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_train_tokenize_prior_and_sample_through_fsq_and_lfq(flow, image_folder, tmp_path):  # noqa: F811
    model_config = FLOWS[flow]()
    run = train_tokenizer(tiny_train_config(image_folder, tmp_path / "tokenizer", model=model_config, max_steps=3))
    tokenizer = (VQVAE2 if flow.startswith("vqvae2") else VQGAN).from_pretrained(run)
    assert tokenizer.config.quantizers == model_config.quantizers
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        grids = tokenizer.encode_levels(images)
        again = type(tokenizer).from_pretrained(run).encode_levels(images)  # the saved folder holds the quantizer
    assert all(torch.equal(a, b) for a, b in zip(grids, again))
    metrics = [line for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert '"codebook_usage"' in metrics[-1]

    codes = tmp_path / "codes"
    tokenize_dataset(run, TokenizeDatasetConfig(dataset=str(image_folder), output_dir=str(codes), batch_size=4,
                                                num_workers=0, progress=False))
    levels = [None] if len(grids) == 1 else ["top", "bottom"]
    priors = []
    for level, kind in zip(levels, ["pixelcnn", "gpt"] if len(levels) == 2 else ["gpt"]):
        settings = {"level": level} if level else {}
        prior_dir = train_prior(tiny_prior_config(codes, tmp_path / f"prior-{level}", prior=kind, max_steps=2,
                                                  **settings))
        priors.append((PixelCNNPrior if kind == "pixelcnn" else GPTPrior).from_pretrained(prior_dir))
    pipe = ImageGenerationPipeline(tokenizer, *priors)
    out = pipe(3, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.shape == (3, 3, 16, 16)
    for grid, size in zip(out.indices if isinstance(out.indices, tuple) else [out.indices],
                          tokenizer.config.codebook_sizes):
        assert int(grid.max()) < size

    quality = evaluate_tokenizer(tokenizer, ImageDataConfig(dataset=str(image_folder), resolution=16), rfid=False,
                                 progress=False)
    perplexities = [v for k, v in quality.items() if k.endswith("perplexity")]  # one per level
    assert 0 < quality["codebook_usage"] <= 1 and len(perplexities) == len(grids) and min(perplexities) >= 1
    assert math.isfinite(quality["psnr"])
