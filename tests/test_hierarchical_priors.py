"""Bottom-level priors of a two-level tokenizer: conditioned on the top grid (GPT: a prefix; PixelCNN: a
conditioning stack). Their logits at a cell depend on every top code and only on the bottom codes before it."""

import pytest
import torch

from tests.conftest import PRIORS

GRID, CONTEXT_GRID, K, K_TOP = (4, 4), (2, 2), 12, 7


def bottom_prior(kind: str, seed: int = 0, **settings):
    model_cls, config_cls = PRIORS[kind]
    torch.manual_seed(seed)
    config = config_cls.from_preset("tiny", codebook_size=K, grid_shape=GRID, context_codebook_size=K_TOP,
                                    context_grid_shape=CONTEXT_GRID, **settings)
    return model_cls(config).eval()


def grids(count: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, K, (count, *GRID), generator=generator),
            torch.randint(0, K_TOP, (count, *CONTEXT_GRID), generator=generator))


@pytest.mark.parametrize("kind", ["gpt", "pixelcnn"])
def test_logits_depend_on_every_top_code_and_only_on_earlier_bottom_codes(kind):
    model = bottom_prior(kind, num_classes=3)
    codes, context = grids()
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        base = model(codes, labels, context)  # (2, 4, 4, K)
        for cell in [(0, 0), (1, 2), (3, 3)]:
            position = cell[0] * GRID[1] + cell[1]
            for top in range(CONTEXT_GRID[0] * CONTEXT_GRID[1]):  # every top code reaches every bottom cell
                changed = context.clone()
                changed.view(2, -1)[0, top] = (changed.view(2, -1)[0, top] + 1) % K_TOP
                assert not torch.allclose(model(codes, labels, changed)[0][cell], base[0][cell]), (cell, top)
            for later in range(position, GRID[0] * GRID[1]):  # the cell itself and the cells after it: no effect
                changed = codes.clone()
                changed.view(2, -1)[0, later] = (changed.view(2, -1)[0, later] + 1) % K
                assert torch.equal(model(changed, labels, context)[0][cell], base[0][cell]), (cell, later)
            if position:  # and the one just before it does reach it
                changed = codes.clone()
                changed.view(2, -1)[0, position - 1] = (changed.view(2, -1)[0, position - 1] + 1) % K
                assert not torch.allclose(model(changed, labels, context)[0][cell], base[0][cell])
        assert torch.allclose(model(codes[1:], labels[1:], context[1:])[0], base[1], atol=1e-6)  # rows do not mix


@pytest.mark.parametrize("kind", ["gpt", "pixelcnn"])
def test_sampling_with_a_context_is_seeded_keeps_the_prefix_and_guides(kind):
    model = bottom_prior(kind, num_classes=3)
    codes, context = grids(count=3)
    settings = dict(class_labels=[0, 1, 2], context=context, prefix=codes[:, :1], top_k=5)
    first = model.sample(3, generator=torch.Generator().manual_seed(1), **settings)
    again = model.sample(3, generator=torch.Generator().manual_seed(1), **settings)
    assert first.shape == (3, *GRID) and torch.equal(first, again) and torch.equal(first[:, 0], codes[:, 0])
    guided = model.sample(3, guidance_scale=2.0, generator=torch.Generator().manual_seed(1), **settings)
    assert guided.shape == (3, *GRID) and guided.max() < K
    other = model.sample(3, generator=torch.Generator().manual_seed(1), **{**settings, "context": (context + 1) % K_TOP})
    assert not torch.equal(first, other)


@pytest.mark.parametrize("kind", ["gpt", "pixelcnn"])
def test_context_sampling_with_and_without_the_cache_agree(kind):
    model = bottom_prior(kind, num_classes=3)
    _, context = grids(count=4)
    kwargs = dict(class_labels=[0, 1, 2, -1], context=context, guidance_scale=1.5, top_p=0.9)
    cached = model.sample(4, generator=torch.Generator().manual_seed(3), **kwargs)
    uncached = model.sample(4, generator=torch.Generator().manual_seed(3), use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("kind", ["gpt", "pixelcnn"])
def test_context_mistakes_are_value_errors_and_files_round_trip(kind, tmp_path):
    model = bottom_prior(kind)
    codes, context = grids()
    with pytest.raises(ValueError, match="expected context \\(B, 2, 2\\)"):
        model(codes)
    with pytest.raises(ValueError, match="context of shape \\(2, 4, 4\\)"):
        model(codes, None, codes)
    with pytest.raises(ValueError, match="context span"):
        model(codes, None, context + K_TOP)
    with pytest.raises(ValueError, match="context for 1 grids"):
        model.sample(2, context=context[:1])
    model_cls, config_cls = PRIORS[kind]
    with pytest.raises(ValueError, match="context given to a prior without one"):
        model_cls(config_cls.from_preset("tiny", codebook_size=K, grid_shape=GRID))(codes, None, context)
    with pytest.raises(ValueError, match="expected both set"):
        config_cls.from_preset("tiny", codebook_size=K, grid_shape=GRID, context_codebook_size=K_TOP)
    model.save_pretrained(tmp_path)
    loaded = model_cls.from_pretrained(tmp_path)
    assert loaded.config == model.config and loaded.config.context_grid_shape == CONTEXT_GRID
    assert torch.equal(loaded(codes, None, context), model(codes, None, context))


def test_pixelcnn_grid_must_be_a_multiple_of_the_context_grid():
    _, config_cls = PRIORS["pixelcnn"]
    with pytest.raises(ValueError, match="not a whole multiple"):
        config_cls.from_preset("tiny", codebook_size=K, grid_shape=(4, 4), context_codebook_size=K_TOP,
                               context_grid_shape=(3, 3))


@pytest.fixture(scope="module")
def two_level_codes(tmp_path_factory):
    """A tiny VQ-VAE-2 (2x2 top, 4x4 bottom grids) and its codes of 2 classes x 10 images with mirrored copies."""
    from pipelines import TokenizeDatasetConfig, tokenize_dataset
    from tests.conftest import write_images
    from tests.test_vqvae2 import tiny_vqvae2

    root = tmp_path_factory.mktemp("two-level")
    tiny_vqvae2().save_pretrained(root / "tokenizer")
    tokenize_dataset(root / "tokenizer", TokenizeDatasetConfig(
        dataset=str(write_images(root / "images", 10, classes=("a", "b"))), output_dir=str(root / "codes"),
        num_workers=0, flip=True, progress=False))
    return root


@pytest.mark.parametrize("kind", ["gpt", "pixelcnn"])
def test_both_levels_train_and_the_bottom_prior_draws_sample_grids(two_level_codes, tmp_path, kind):
    from pipelines.decoder import load_decoder
    from pipelines.training import train_prior
    from prior import CodesDataset
    from tests.test_prior_training import tiny_config

    codes, decoder = two_level_codes / "codes", load_decoder(two_level_codes / "tokenizer")
    settings = dict(prior=kind, max_steps=2, include_flipped=True, sample_every=2)
    top = PRIORS[kind][0].from_pretrained(train_prior(tiny_config(codes, tmp_path / "top", level="top", **settings)))
    assert top.config.grid_shape == (2, 2) and not top.config.context_grid_shape and top.config.num_classes == 2
    bottom_dir = train_prior(tiny_config(codes, tmp_path / "bottom", level="bottom", **settings), decoder)
    bottom = PRIORS[kind][0].from_pretrained(bottom_dir)
    assert (bottom.config.grid_shape, bottom.config.context_grid_shape, bottom.config.context_codebook_size) == ((4, 4), (2, 2), 16)
    assert (bottom_dir / "samples" / "samples_0000002.png").is_file()
    lines = (bottom_dir / "metrics.jsonl").read_text().splitlines()
    assert '"val_bits_per_token"' in lines[-1]
    tops = CodesDataset(codes, level="top")
    assert bottom.sample(2, class_labels=[0, 1], context=torch.stack([tops[0][0], tops[1][0]])).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="expected level='top' or 'bottom'"):
        train_prior(tiny_config(codes, tmp_path / "none", **settings))
    with pytest.raises(ValueError, match="sample grids of a top-level prior need bottom grids"):
        train_prior(tiny_config(codes, tmp_path / "top2", level="top", **settings), decoder)


@pytest.mark.parametrize("kind", ["gpt", "pixelcnn"])
def test_a_stopped_bottom_prior_run_resumes_exactly(two_level_codes, tmp_path, monkeypatch, kind):
    """The batches carry the top grids the bottom codes were encoded with (mirrored copies included): a resumed
    run must draw the same (codes, label, top codes) triples, in the same order, as the uninterrupted one."""
    from pipelines.training import train_prior
    from tests.test_prior_training import assert_same, stop_at_step_3_then_resume, tiny_config, weights

    def config(output):
        return tiny_config(two_level_codes / "codes", output, prior=kind, level="bottom", include_flipped=True,
                           batch_size=4)

    train_prior(config(tmp_path / "full"))
    stop_at_step_3_then_resume(config(tmp_path / "resumed"), monkeypatch)
    assert_same(weights(tmp_path / "full"), weights(tmp_path / "resumed"))
