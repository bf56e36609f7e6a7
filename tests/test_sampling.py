"""The one sampling loop (prior/sampling.py) with a fake prior: what it hands a model, chunk by chunk, and how it
draws from what the model gives back."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from prior.sampling import pick_tokens, sample_grids

K, GRID = 6, (2, 3)
CELLS = GRID[0] * GRID[1]


class FakePrior(nn.Module):
    """Logits from the labels and the tokens so far (no network); records every `start_sampling` and step."""

    def __init__(self, num_classes: int = 3, context_grid_shape: tuple = ()):
        super().__init__()
        self.config = SimpleNamespace(codebook_size=K, grid_shape=GRID, num_classes=num_classes,
                                      context_grid_shape=context_grid_shape, context_codebook_size=4)
        self.anchor = nn.Parameter(torch.zeros(0))  # the loop takes the device from the parameters
        self.calls = []

    def start_sampling(self, labels, context, **options):
        call = dict(labels=labels.clone(), context=context, options=options, steps=[])
        self.calls.append(call)

        def next_logits(tokens):  # (B', t) → (B', K)
            call["steps"].append(tokens.clone())
            return fake_logits(labels, tokens)

        return next_logits


def fake_logits(labels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """A label's own token (-1: the last one) well ahead, the rest varying with the tokens so far."""
    favourite = torch.where(labels >= 0, labels, K - 1)
    varying = torch.sin(torch.arange(K) * (tokens.shape[1] + 1.0) + tokens.sum(1, keepdim=True))  # (B', K)
    return varying + 4.0 * nn.functional.one_hot(favourite, K)


def test_chunks_in_order_each_doubled_for_guidance():
    """Batch 5 in chunks of 2: three model batches of 2B rows, [cond; uncond] with the null label, the same
    context and prefix on both halves; one step per cell after the prefix, each grid's token on both of its rows."""
    prior = FakePrior(context_grid_shape=(1, 2))
    labels = torch.tensor([0, 1, 2, -1, 1])
    context = torch.randint(0, 4, (5, 1, 2))
    prefix = torch.randint(0, K, (5, 2))
    out = sample_grids(prior, 5, class_labels=labels, guidance_scale=2.0, prefix=prefix, context=context,
                       max_batch_size=2, generator=torch.Generator().manual_seed(0), use_cache=False)
    assert out.shape == (5, *GRID) and torch.equal(out.reshape(5, -1)[:, :2], prefix)
    assert [call["options"] for call in prior.calls] == [{"use_cache": False}] * 3
    for call, part in zip(prior.calls, [slice(0, 2), slice(2, 4), slice(4, 5)], strict=True):
        b = labels[part].shape[0]
        assert torch.equal(call["labels"], torch.cat([labels[part], torch.full((b,), -1)]))
        assert torch.equal(call["context"], torch.cat([context[part], context[part]]))
        assert [s.shape[1] for s in call["steps"]] == list(range(2, CELLS))
        last = call["steps"][-1]  # (2B, CELLS - 1): what was written by then, the same on both halves
        assert torch.equal(last[:b], last[b:]) and torch.equal(last[:b], out[part].reshape(b, -1)[:, :-1])


def test_guidance_mixes_cond_and_uncond_logits():
    """guide: uncond + s (cond - uncond). Greedy (top_k=1): s=0 writes the null condition's token, s=3 the
    class's; a prior without classes is never doubled."""
    prior = FakePrior()
    uncond = sample_grids(prior, 3, class_labels=[0, 1, 2], guidance_scale=0.0, top_k=1)
    cond = sample_grids(prior, 3, class_labels=[0, 1, 2], guidance_scale=3.0, top_k=1)
    assert (uncond == K - 1).all() and torch.equal(cond, torch.arange(3)[:, None, None].expand(3, *GRID))
    plain = FakePrior(num_classes=0)
    sample_grids(plain, 3, guidance_scale=3.0)
    assert plain.calls[0]["labels"].tolist() == [-1, -1, -1]


def test_one_draw_per_cell_over_each_chunk_in_order():
    """The generator's stream: chunk after chunk, one `pick_tokens` over the chunk's grids per cell."""
    labels = torch.tensor([0, 2, 1, 1, 0])
    kwargs = dict(temperature=0.7, top_k=4, top_p=0.9)
    out = sample_grids(FakePrior(), 5, class_labels=labels, generator=torch.Generator().manual_seed(3),
                       max_batch_size=2, **kwargs)
    generator, expected = torch.Generator().manual_seed(3), []
    for part in (slice(0, 2), slice(2, 4), slice(4, 5)):
        tokens = torch.zeros(labels[part].shape[0], CELLS, dtype=torch.long)
        for t in range(CELLS):
            logits = fake_logits(labels[part], tokens[:, :t])
            tokens[:, t] = pick_tokens(logits, kwargs["temperature"], kwargs["top_k"], kwargs["top_p"], generator)
        expected.append(tokens)
    assert torch.equal(out.reshape(5, -1), torch.cat(expected))


def test_bad_batch_sizes_are_value_errors():
    with pytest.raises(ValueError, match="max_batch_size=0"):
        sample_grids(FakePrior(), 2, max_batch_size=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        sample_grids(FakePrior(), 0)


@torch.no_grad()
def test_the_pipeline_samples_each_level_once_for_all_images(monkeypatch):
    """batch_size bounds each forward pass: one `sample` call per level for all images (max_batch_size=batch_size),
    the top grids first, then the bottom grids given them; decoded batch_size images at a time."""
    from pathlib import Path

    from pipelines import ImageGenerationPipeline

    pipe = ImageGenerationPipeline.from_pretrained(Path(__file__).parent / "data" / "legacy" / "vqvae2-pixelcnn-gpt")
    calls, sample_top = [], pipe.prior.sample
    for prior in pipe.priors:
        def spy(n, real=prior.sample, **kwargs):
            calls.append((n, kwargs["max_batch_size"], kwargs["context"]))
            return real(n, **kwargs)
        monkeypatch.setattr(prior, "sample", spy)
    out = pipe(5, generator=torch.Generator().manual_seed(1), output_type="pt", batch_size=2, temperature=0.9)
    assert [call[:2] for call in calls] == [(5, 2), (5, 2)]
    assert calls[0][2] is None and torch.equal(calls[1][2], out.indices[0])
    top = sample_top(5, generator=torch.Generator().manual_seed(1), max_batch_size=2, temperature=0.9)
    assert torch.equal(out.indices[0], top)
    decoded = torch.cat([pipe.tokenizer.decode_levels([g[i : i + 2] for g in out.indices]) for i in (0, 2, 4)])
    assert torch.equal(out.images, (decoded.float().clamp(-1, 1) + 1) / 2)
