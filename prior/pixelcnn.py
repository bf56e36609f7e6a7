"""Gated PixelCNN prior over code grids (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders"): a vertical stack that sees every row above and a horizontal stack that sees the cells
to the left, so there is no blind spot; gated tanh·sigmoid units; class conditioning added to every gate.

Causality by construction (no masks): the vertical stack's convolutions look only upward (rows ≤ i) and
reach the horizontal stack shifted down one row (rows < i); the horizontal stack looks only left, and its
first layer reads the input shifted right one cell (cells < j). Shapes: codes (B, h, w) → logits (B, h, w, K).

A bottom-level prior of a two-level (VQ-VAE-2) tokenizer is conditioned on the top grid as in the paper: a
conditioning stack embeds the top codes and mixes them with residual 3x3 convolutions at the top resolution,
enough of them that every output cell sees the whole top grid; each gated layer adds a 1x1 projection of it,
repeated up to the bottom grid, to its gates (a spatial condition beside the class's global one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .files import PriorCodesConfig, PriorFiles
from .sampling import check_codes, check_labels, context_grids, sample_grids

PIXELCNN_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_channels=32, num_layers=6),
    "small": dict(hidden_channels=128, num_layers=12),
    "base": dict(hidden_channels=256, num_layers=20),
}


@dataclass
class PixelCNNPriorConfig(PriorCodesConfig):
    hidden_channels: int = 128
    num_layers: int = 12
    first_kernel_size: int = 7
    kernel_size: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.context_grid_shape and any(g % c for g, c in zip(self.grid_shape, self.context_grid_shape)):
            raise ValueError(f"grid {self.grid_shape} is not a whole multiple of the context grid {self.context_grid_shape}")
        for name in ("first_kernel_size", "kernel_size"):
            if getattr(self, name) < 3 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name}={getattr(self, name)}: expected an odd size >= 3")
        if self.num_layers < self.layers_needed():
            raise ValueError(
                f"num_layers={self.num_layers} leaves cells of a {self.grid_shape} grid outside the receptive "
                f"field (a blind spot); expected at least {self.layers_needed()} layers"
            )

    def layers_needed(self) -> int:
        """Fewest layers whose reach R = k1//2 + (L-1)·k//2 covers the raster past: R ≥ max(h-2, w-1)."""
        h, w = self.grid_shape
        missing = max(h - 2, w - 1) - self.first_kernel_size // 2
        return 1 + max(0, -(-missing // (self.kernel_size // 2)))

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "PixelCNNPriorConfig":
        """A preset, with num_layers raised when the grid needs more to cover the raster past."""
        if name not in PIXELCNN_PRESETS:
            raise ValueError(f"size={name!r}: expected one of {sorted(PIXELCNN_PRESETS)}")
        settings = {**PIXELCNN_PRESETS[name], **kwargs}
        probe = cls(**{**settings, "num_layers": 10**6})
        settings["num_layers"] = max(settings["num_layers"], probe.layers_needed())
        return cls(**settings)

    @property
    def null_class(self) -> int:
        return self.num_classes


def _shift_down(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]  # row i now holds row i-1


def _shift_right(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]  # column j now holds column j-1


class ContextStack(nn.Module):
    """Top grids (B, h_t, w_t) → features (B, D, h_t, w_t) in which every cell has seen every top code."""

    def __init__(self, codebook_size: int, context_grid: tuple[int, int], channels: int):
        super().__init__()
        self.embed = nn.Embedding(codebook_size, channels)
        # Each 3x3 convolution reaches one cell further: max(h_t, w_t) - 1 of them span the grid corner to corner.
        self.mix = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(max(1, max(context_grid) - 1)))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        x = self.embed(context).permute(0, 3, 1, 2)  # (B, D, h_t, w_t)
        for conv in self.mix:
            x = x + conv(F.relu(x))
        return x


class GatedLayer(nn.Module):
    """One vertical + horizontal gated layer. v: (B, D, h, w) sees rows ≤ i; h: sees row i, cells < j."""

    def __init__(self, channels: int, kernel_size: int, num_conditions: int, first: bool, spatial_condition: bool = False):
        super().__init__()
        self.k, self.first = kernel_size, first
        self.vertical = nn.Conv2d(channels, 2 * channels, (kernel_size // 2 + 1, kernel_size))
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, kernel_size // 2 + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.condition = nn.Embedding(num_conditions, 4 * channels)  # gate biases for both stacks
        # A bottom-level prior's top-grid features → spatial gate biases for both stacks.
        self.spatial = nn.Conv2d(channels, 4 * channels, 1) if spatial_condition else None

    def biases(self, condition: torch.Tensor, context: torch.Tensor | None, grid: tuple[int, int]):
        """Gate biases of both stacks, (B, 2D, 1, 1) each, or (B, 2D, h, w) with a context: the class's and the
        context features' (B, D, h_t, w_t) 1x1 projection repeated up to the grid."""
        bias = self.condition(condition)[:, :, None, None]  # (B, 4D, 1, 1)
        if self.spatial is not None:
            spatial = self.spatial(context)  # (B, 4D, h_t, w_t)
            scale = (grid[0] // spatial.shape[2], grid[1] // spatial.shape[3])
            bias = bias + spatial.repeat_interleave(scale[0], dim=2).repeat_interleave(scale[1], dim=3)
        cond_v, cond_h = bias.chunk(2, dim=1)
        return cond_v, cond_h

    def vertical_pre(self, v: torch.Tensor) -> torch.Tensor:
        """(B, D, r, w) → pre-gate (B, 2D, r, w): row i reads rows i-k//2..i; rows below never matter."""
        half = self.k // 2
        return self.vertical(F.pad(v, (half, half, half, 0)))

    def horizontal_step(self, h: torch.Tensor, from_above: torch.Tensor, cond_h: torch.Tensor) -> torch.Tensor:
        """(B, D, r, c) → (B, D, r, c): cell j reads cells < j (first layer) or ≤ j of its row, plus
        `from_above` (B, 2D, r, c), the vertical stack's rows above mixed in by v_to_h."""
        h_in = _shift_right(h) if self.first else h  # first layer: the current cell must not see itself
        h_pre = self.horizontal(F.pad(h_in, (self.k // 2, 0, 0, 0))) + from_above
        h_out = self.h_out(_gate(h_pre + cond_h))
        return h_out if self.first else h + h_out

    def forward(self, v: torch.Tensor, h: torch.Tensor, condition: torch.Tensor,
                context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """context: the ContextStack's features (B, D, h_t, w_t) of a bottom-level prior, else None."""
        cond_v, cond_h = self.biases(condition, context, v.shape[2:])
        v_pre = self.vertical_pre(v)  # rows i-half..i, cols j±half
        h = self.horizontal_step(h, self.v_to_h(_shift_down(v_pre)), cond_h)
        return _gate(v_pre + cond_v), h


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class PixelCNNPrior(PriorFiles, nn.Module):
    """codes (B, h, w) [+ labels (B,)] → logits (B, h, w, K), with the same `sample` API as GPTPrior."""

    prior_type = "pixelcnn"
    config_class = PixelCNNPriorConfig

    def __init__(self, config: PixelCNNPriorConfig):
        super().__init__()
        self.config = config
        d = config.hidden_channels
        self.embed = nn.Embedding(config.codebook_size, d)
        conditions = config.num_classes + 1  # + the null class (unconditional / guidance)
        spatial = bool(config.context_grid_shape)
        self.context_stack = ContextStack(config.context_codebook_size, config.context_grid_shape, d) if spatial else None
        self.layers = nn.ModuleList(
            GatedLayer(d, config.first_kernel_size if i == 0 else config.kernel_size, conditions, first=i == 0,
                       spatial_condition=spatial)
            for i in range(config.num_layers)
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(d, d, 1), nn.ReLU(), nn.Conv2d(d, config.codebook_size, 1))

    def condition_ids(self, labels: torch.Tensor | None, batch_size: int, device: torch.device) -> torch.Tensor:
        if labels is None:
            return torch.full((batch_size,), self.config.null_class, dtype=torch.long, device=device)
        labels = labels.to(device=device, dtype=torch.long)
        check_labels(labels, self.config.num_classes)
        return torch.where(labels >= 0, labels, self.config.null_class)

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, h, w, K) from the class, the context (a bottom-level prior's top grid (B, h_t, w_t)) and
        the cells before each one in raster order."""
        check_codes(codes, self.config.grid_shape, self.config.codebook_size)
        condition = self.condition_ids(labels, codes.shape[0], codes.device)
        grids = context_grids(context, codes.shape[0], self.config)
        features = self.context_stack(grids.to(codes.device)) if grids is not None else None  # (B, D, h_t, w_t)
        x = self.embed(codes.long()).permute(0, 3, 1, 2)  # (B, D, h, w)
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h, condition, features)
        return self.head(h).permute(0, 2, 3, 1)  # (B, h, w, K)

    @torch.no_grad()
    def sample(self, batch_size: int, class_labels=None, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, guidance_scale: float = 1.0, prefix=None,
               generator: torch.Generator | None = None, max_batch_size: int = 256, context=None,
               use_cache: bool = True, progress: bool = False) -> torch.Tensor:
        """New code grids (B, h, w) through `sampling.sample_grids`, one cell at a time in raster order; `prefix`
        cells are kept; `context` (B, h_t, w_t): the top grids a bottom-level prior writes its grids for.
        `use_cache=False` runs the whole network over the grid for every cell (the reference the row cache is
        compared with)."""
        return sample_grids(self, batch_size, class_labels, temperature, top_k, top_p, guidance_scale, prefix,
                            generator, context, max_batch_size, progress, use_cache=use_cache)

    def start_sampling(self, labels: torch.Tensor, context: torch.Tensor | None, use_cache: bool = True):
        """`next_logits` for `sampling.sample_grids`: labels (B',) (-1: the null class), top grids (B', h_t, w_t)
        or None → a function of the codes so far (B', t) giving the logits (B', K) of cell t: the row cache, or
        with `use_cache=False` `forward` over the whole grid (its cells from t on 0)."""
        if use_cache:
            return RowCache(self, labels, context)
        h, w = self.config.grid_shape

        def recomputed(tokens: torch.Tensor) -> torch.Tensor:
            t = tokens.shape[1]
            return self(F.pad(tokens, (0, h * w - t)).view(-1, h, w), labels, context)[:, t // w, t % w]

        return recomputed


class RowCache:
    """`next_logits` of a PixelCNN computing only what a new code changes: the condition's and the context
    stack's gate biases once; the vertical stack (it sees only the rows above) once per row; per cell, each
    layer's horizontal stack at that cell alone, from the few cells to its left that its kernel reads (the
    states of the row's earlier cells are kept), and the head there. This computes what `forward` does at each
    cell (tested) with about 1/(h·w) of its horizontal work and 2/h of its vertical work per cell."""

    def __init__(self, model: PixelCNNPrior, labels: torch.Tensor, context: torch.Tensor | None):
        self.model, self.width = model, model.config.grid_shape[1]
        conditions = model.condition_ids(labels, labels.shape[0], labels.device)
        features = model.context_stack(context) if context is not None else None  # (B', D, h_t, w_t)
        self.biases = [layer.biases(conditions, features, model.config.grid_shape) for layer in model.layers]
        self.row, self.filled = -1, 0  # the row being written; how many of its cells have their states

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """Codes so far (B', t) → the logits (B', K) of cell t."""
        i, j = divmod(tokens.shape[1], self.width)
        if i != self.row:  # a new row: what it reads from the rows above, and its states (B', D, 1, w) per layer
            b, d = tokens.shape[0], self.model.config.hidden_channels
            rows = tokens[:, : i * self.width].reshape(b, i, self.width)
            self.above = self._from_rows_above(rows)  # per layer (B', 2D, 1, w)
            self.states = [self.model.embed.weight.new_empty(b, d, 1, self.width) for _ in self.model.layers]
            self.row, self.filled = i, 0
        row = F.pad(tokens[:, i * self.width :], (0, 1))  # (B', j + 1): cell j, not yet written, as 0
        for cell in range(self.filled, j + 1):  # cells before j only fill the states (a prefix ending mid-row)
            self._fill(row, cell)
        self.filled = j + 1
        return self.model.head(self.states[-1][..., j : j + 1]).flatten(1)

    def _fill(self, row: torch.Tensor, j: int) -> None:
        """Every layer's horizontal state at cell j of the row being written, from the row's codes (B', >j)."""
        for n, (layer, from_above, (_, cond_h)) in enumerate(zip(self.model.layers, self.above, self.biases)):
            # The cells this layer's kernel reads at j: half to the left (one more for the first layer, which
            # reads the input shifted right); the kernel's own padding stands in left of the row.
            low = max(0, j - layer.k // 2 - layer.first)
            window = (self.model.embed(row[:, low : j + 1]).permute(0, 2, 1)[:, :, None] if n == 0
                      else self.states[n - 1][..., low : j + 1])  # (B', D, 1, j+1-low)
            bias = cond_h[:, :, self.row : self.row + 1, low : j + 1] if cond_h.shape[2] > 1 else cond_h
            self.states[n][..., j : j + 1] = layer.horizontal_step(window, from_above[..., low : j + 1], bias)[..., -1:]

    def _from_rows_above(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """The finished rows (B', r, w) above the row being written → what each layer's horizontal stack reads
        from the vertical stack there: v_to_h of the vertical pre-gates of row r-1 (B', 2D, 1, w); of zeros
        for the first row, as `forward`'s shift down gives it."""
        b, r, w = rows.shape
        v = self.model.embed(rows).permute(0, 3, 1, 2)  # (B', D, r, w)
        mixed = []
        for layer, (cond_v, _) in zip(self.model.layers, self.biases):
            if r == 0:
                mixed.append(layer.v_to_h(v.new_zeros(b, 2 * v.shape[1], 1, w)))
                continue
            v_pre = layer.vertical_pre(v)  # (B', 2D, r, w)
            mixed.append(layer.v_to_h(v_pre[:, :, -1:]))
            v = _gate(v_pre + (cond_v[:, :, :r] if cond_v.shape[2] > 1 else cond_v))
        return mixed
