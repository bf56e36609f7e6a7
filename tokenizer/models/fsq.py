"""Finite scalar quantisation (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Each of the d = len(levels) latent dimensions is squashed into a bounded range and rounded to one of L_i
values, so the codebook is the grid of all combinations, prod(L_i) codes, and nothing is learned: no codebook
loss, no commitment loss, no collapse to repair. Rounding passes gradients straight through.
"""

from __future__ import annotations

import torch

from .quantizer import CodeUsage, QuantizerConfig, QuantizerOutput


class FiniteScalarQuantizer(CodeUsage):
    """Latents (B, d, h, w) → the nearest grid point (values in [-1, 1] per dimension), indices (B, h, w)."""

    kind = "fsq"

    def __init__(self, config: QuantizerConfig):
        super().__init__(config)
        levels = torch.tensor(config.fsq_levels)
        # Mixed radix: index = sum_i digit_i · prod_{j<i} L_j, digit_i in [0, L_i).
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), levels[:-1]]), 0)
        # Constants, not state: kept out of the saved weights.
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    def _bound(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, d) → (N, d) in (-L/2, L/2) shifted so that rounding gives exactly L values: for an even L the range
        is offset by a half so the L integers from -L/2 to L/2 - 1 are reachable."""
        half = (self.levels - 1) * (1 + 1e-3) / 2
        offset = (self.levels % 2 == 0).float() * 0.5
        shift = torch.atanh(offset / half)
        return torch.tanh(flat + shift) * half - offset

    def _digits_to_codes(self, digits: torch.Tensor) -> torch.Tensor:
        """Digits (..., d) in [0, L) → code values in [-1, 1]."""
        half_width = self.levels // 2
        return (digits - half_width) / half_width

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, h, w) long → code vectors (B, d, h, w)."""
        digits = (indices.unsqueeze(-1) // self.basis) % self.levels  # (B, h, w, d)
        return self._digits_to_codes(digits.float()).permute(0, 3, 1, 2).contiguous()

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        flat = self._latent_rows(latents)  # (N, d)
        with torch.autocast(device_type=latents.device.type, enabled=False):
            bounded = self._bound(flat)
            rounded = bounded + (bounded.round() - bounded).detach()  # straight-through rounding
            half_width = self.levels // 2
            digits = (rounded.detach() + half_width).long()  # (N, d) in [0, L)
            indices = (digits * self.basis).sum(1)
            codes = rounded / half_width
            if self.training:
                self._count_codes_(indices)
        zero = codes.new_zeros(())
        return self._on_grid(latents, codes, indices, zero, zero, loss=zero)
