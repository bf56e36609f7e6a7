"""The one sampling loop of every prior, and the checks, guidance and token picking it is made of.

`sample_grids` does for every family what sampling shares: the argument checks, labels, prefix and context
(`sampling_chunks`: cut into chunks of at most `max_batch_size` grids, each doubled to [cond; uncond] rows under
classifier-free guidance), the drawing of tokens (`TokenPicker`: guidance, filters, the generator) and the loop
over the cells. A model supplies only its logits, through one method:

    next_logits = prior.start_sampling(labels (B',), context (B', h_t, w_t) or None, **options)
    next_logits(tokens (B', t)) -> logits (B', K) of cell t, given the raster tokens before it

labels are -1 for none (the null condition); B' = B, or 2B under guidance. `raster_loop` calls `next_logits`
once per cell with t = p, p+1, ... (p: the prefix length), so a model may keep state between calls (a cache).
A parallel loop (MaskGIT) would take the same chunks and picker with a `loop=` of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None, guidance_scale: float) -> None:
    """ValueError naming a setting outside its range; NaN and infinities are outside every range."""
    if not (0 < temperature < math.inf):
        raise ValueError(f"temperature={temperature}: expected a finite positive value")
    if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
        raise ValueError(f"top_k={top_k}: expected None or a positive integer")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p}: expected None or a value in (0, 1]")
    if not (0 <= guidance_scale < math.inf):
        raise ValueError(f"guidance_scale={guidance_scale}: expected a finite non-negative value (1.0 = no guidance)")


def class_labels_tensor(class_labels, batch_size: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Labels (B,) long, with -1 meaning 'no class'. Accepts None, an int, or a sequence/tensor of B ints."""
    if class_labels is None:
        return torch.full((batch_size,), -1, dtype=torch.long, device=device)
    labels = torch.as_tensor(class_labels, dtype=torch.long, device=device).flatten()
    if labels.numel() == 1:
        labels = labels.expand(batch_size)
    if labels.numel() != batch_size:
        raise ValueError(f"{labels.numel()} class labels for a batch of {batch_size}: expected one label or one per image")
    check_labels(labels, num_classes)
    return labels.clone()


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Labels must be -1 (none) or in [0, num_classes)."""
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if num_classes == 0 and high >= 0:
        raise ValueError(f"class label {high} given to a prior without classes (num_classes=0)")
    if low < -1 or high >= num_classes:
        raise ValueError(f"class labels span [{low}, {high}]; expected values in [0, {num_classes}) or -1 for none")


def check_codes(codes: torch.Tensor, grid_shape: tuple[int, int], codebook_size: int, name: str = "codes") -> None:
    if codes.ndim != 3 or tuple(codes.shape[1:]) != tuple(grid_shape):
        raise ValueError(f"{name} of shape {tuple(codes.shape)}: expected (B, {grid_shape[0]}, {grid_shape[1]})")
    if codes.dtype.is_floating_point:
        raise ValueError(f"{name} of dtype {codes.dtype}: expected integer code indices")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise ValueError(
            f"{name} span [{int(codes.min())}, {int(codes.max())}]; expected values in [0, {codebook_size})"
        )


def context_grids(context, batch_size: int, config) -> torch.Tensor | None:
    """The top grids (B, h_t, w_t) a bottom-level prior is conditioned on; None for a prior without a context.
    ValueError when a context is missing, unexpected or does not fit the config."""
    if not config.context_grid_shape:
        if context is not None:
            raise ValueError("context given to a prior without one (context_grid_shape is empty)")
        return None
    if context is None:
        raise ValueError(f"this prior is conditioned on a {config.context_grid_shape} grid of top codes: expected "
                         f"context (B, {config.context_grid_shape[0]}, {config.context_grid_shape[1]})")
    context = torch.as_tensor(context)
    check_codes(context, config.context_grid_shape, config.context_codebook_size, "context")
    if context.shape[0] != batch_size:
        raise ValueError(f"context for {context.shape[0]} grids: expected one per grid ({batch_size})")
    return context.long()


def prefix_tokens(prefix, batch_size: int, grid_shape: tuple[int, int], codebook_size: int, device) -> torch.Tensor:
    """A prefix as raster-order tokens (B, p): given as (B, p) tokens or (B, rows, w) whole code rows."""
    h, w = grid_shape
    if prefix is None:
        return torch.zeros(batch_size, 0, dtype=torch.long, device=device)
    prefix = torch.as_tensor(prefix, device=device)
    if prefix.ndim == 3:
        if prefix.shape[2] != w or prefix.shape[1] > h:
            raise ValueError(f"prefix of shape {tuple(prefix.shape)}: expected (B, rows <= {h}, {w}) code rows")
        prefix = prefix.flatten(1)
    if prefix.ndim != 2 or prefix.shape[0] != batch_size or prefix.shape[1] > h * w:
        raise ValueError(f"prefix of shape {tuple(prefix.shape)}: expected (B={batch_size}, p <= {h * w}) or (B, rows, {w})")
    if prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= codebook_size):
        raise ValueError(f"prefix codes span [{int(prefix.min())}, {int(prefix.max())}]; expected [0, {codebook_size})")
    return prefix.long()


def guide(logits: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance on a doubled batch [cond; uncond] (2B, V) -> uncond + s (cond - uncond) (B, V)."""
    cond, uncond = logits.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def pick_tokens(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Sample one token per row from (B, V) logits after temperature, top-k and top-p filtering: (B,) long."""
    scores = logits.float()
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None and top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@dataclass(frozen=True)
class TokenPicker:
    """Logits of a chunk's model rows → tokens: classifier-free guidance mixes the [cond; uncond] halves, then
    temperature, top-k and top-p filter and one `torch.multinomial` per call draws from `generator`."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    guidance_scale: float | None = None  # None: unguided, one model row per grid
    generator: torch.Generator | None = None

    def rows(self, per_grid: torch.Tensor) -> torch.Tensor:
        """(B, ...) per grid → (B', ...) per model row: the same twice, [cond; uncond], under guidance."""
        return per_grid if self.guidance_scale is None else torch.cat([per_grid, per_grid])

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """(B', K) logits → (B',) tokens; under guidance each grid's token on both of its rows."""
        if self.guidance_scale is not None:
            logits = guide(logits, self.guidance_scale)
        return self.rows(pick_tokens(logits, self.temperature, self.top_k, self.top_p, self.generator))


@dataclass
class Chunk:
    """At most max_batch_size grids of a call as the model sees them: B' rows, B' = B or, under guidance, 2B
    ([cond; uncond]: the null condition on the second half, the same context and prefix on both)."""

    size: int  # B: the grids this chunk writes
    labels: torch.Tensor  # (B',) class labels, -1 for none
    context: torch.Tensor | None  # (B', h_t, w_t): a bottom-level prior's top grids
    prefix: torch.Tensor  # (B', p) raster tokens to keep
    pick: TokenPicker


def sampling_chunks(prior, batch_size: int, class_labels, prefix, context, pick: TokenPicker,
                    max_batch_size: int) -> list[Chunk]:
    """The preamble every loop shares: labels, prefix and context checked and put on the prior's device, cut
    into chunks in batch order, doubled for guidance."""
    if batch_size < 1 or max_batch_size < 1:
        raise ValueError(f"batch_size={batch_size}, max_batch_size={max_batch_size}: expected positive integers")
    config, device = prior.config, next(prior.parameters()).device
    labels = class_labels_tensor(class_labels, batch_size, config.num_classes, device)
    prefix = prefix_tokens(prefix, batch_size, config.grid_shape, config.codebook_size, device)
    grids = context_grids(context, batch_size, config)
    grids = grids.to(device) if grids is not None else None
    chunks = []
    for start in range(0, batch_size, max_batch_size):
        part = slice(start, start + max_batch_size)
        cond = labels[part]
        chunk_labels = cond if pick.guidance_scale is None else torch.cat([cond, torch.full_like(cond, -1)])
        chunk_context = pick.rows(grids[part]) if grids is not None else None
        chunks.append(Chunk(cond.shape[0], chunk_labels, chunk_context, pick.rows(prefix[part]), pick))
    return chunks


def raster_loop(prior, chunk: Chunk, **options) -> torch.Tensor:
    """One chunk's grids as tokens (B, h*w), one cell at a time in raster order after the prefix; `options`
    go to `prior.start_sampling`."""
    h, w = prior.config.grid_shape
    p = chunk.prefix.shape[1]
    tokens = chunk.prefix.new_zeros(chunk.prefix.shape[0], h * w)  # (B', h*w)
    tokens[:, :p] = chunk.prefix
    next_logits = prior.start_sampling(chunk.labels, chunk.context, **options)
    for t in range(p, h * w):
        tokens[:, t] = chunk.pick(next_logits(tokens[:, :t]))
    return tokens[: chunk.size]


@torch.no_grad()
def sample_grids(prior, batch_size: int, class_labels=None, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, guidance_scale: float = 1.0, prefix=None,
                 generator: torch.Generator | None = None, context=None, max_batch_size: int = 256,
                 progress: bool = False, loop=raster_loop, **options) -> torch.Tensor:
    """New code grids (B, h, w) from `prior` (see the module docstring for what it supplies): chunks of at
    most `max_batch_size` grids in order, each written by `loop` (default: `raster_loop`) with `options`;
    `progress` shows a bar over the grids. Guidance applies only to a prior with classes."""
    check_sampling_args(temperature, top_k, top_p, guidance_scale)
    guided = guidance_scale != 1.0 and prior.config.num_classes > 0
    pick = TokenPicker(temperature, top_k, top_p, guidance_scale if guided else None, generator)
    grids = []
    with tqdm(total=batch_size, desc="sample", unit="img", disable=not progress) as bar:
        for chunk in sampling_chunks(prior, batch_size, class_labels, prefix, context, pick, max_batch_size):
            grids.append(loop(prior, chunk, **options))
            bar.update(chunk.size)
    return torch.cat(grids).reshape(batch_size, *prior.config.grid_shape)
