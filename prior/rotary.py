"""Rotary position tables for the GPT prior beyond transformers' own 1-D RoPE: LlamaGen's 2-D grid angles, and
its zeroed condition token.

transformers' Llama (and the fused decode step) rotate q and k in the rotate-half convention: pair j of a head
is dims (j, j + d/2), turned by the angle a_j at the token's position, with `cos = cat([cos a, cos a])` (d,).
This module replaces `LlamaModel.rotary_emb` by a fixed table of those cos/sin rows, one per sequence position
(the condition token, then the codes in raster order), so both paths read it unchanged.

- positions "grid" (LlamaGen's precompute_freqs_cis_2d): the first d/4 pairs turn with the code's row r, the
  last d/4 with its column c, at the frequencies theta_m = base^(-4m/d), m < d/4. LlamaGen pairs adjacent dims
  (2j, 2j+1); a converted checkpoint's q/k rows are permuted into the rotate-half order (llamagen_prior.py).
- zero_condition: the condition token's cos and sin are 0, not (1, 0): its rotated query and key are zero
  vectors (LlamaGen's table starts with zero rows for its class token), so every code scores it 0.
"""

from __future__ import annotations

import torch
from torch import nn

POSITIONS = ("sequence", "grid")


class TableRotaryEmbedding(nn.Module):
    """(x, position_ids (B, S)) → cos, sin (B, S, d) in x's dtype, read from a table (L, d) built once."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor):
        super().__init__()
        # Not saved (persistent=False): the table follows from the config, as transformers' inv_freq does.
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos[position_ids].to(x.dtype), self.sin[position_ids].to(x.dtype)


def rotary_angles(positions: str, head_dim: int, theta: float, head_length: int,
                  grid_shape: tuple[int, int]) -> torch.Tensor:
    """Angles (L, d/2) of every sequence position, L = head_length + h*w: the head (condition, context) first,
    then the codes in raster order."""
    h, w = grid_shape
    length = head_length + h * w
    if positions == "sequence":  # transformers' default: position p turns pair j by p · theta^(-2j/d)
        inv_freq = theta ** -(torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (d/2,)
        return torch.arange(length, dtype=torch.float64)[:, None] * inv_freq
    if positions != "grid":
        raise ValueError(f"positions={positions!r}: expected one of {POSITIONS}")
    if head_dim % 4:
        raise ValueError(f"grid positions split each head's rotary pairs between rows and columns: expected a head "
                         f"size divisible by 4, got {head_dim}")
    inv_freq = theta ** -(torch.arange(0, head_dim // 2, 2, dtype=torch.float64) / (head_dim // 2))  # (d/4,)
    cells = torch.arange(h * w)
    rows, cols = (cells // w).double(), (cells % w).double()
    grid = torch.cat([rows[:, None] * inv_freq, cols[:, None] * inv_freq], dim=1)  # (h*w, d/2)
    # The head's positions get angle 0 (the identity): only the condition is allowed there, see GPTPriorConfig.
    return torch.cat([grid.new_zeros(head_length, head_dim // 2), grid])


def rotary_table(positions: str, zero_condition: bool, head_dim: int, theta: float, head_length: int,
                 grid_shape: tuple[int, int]) -> TableRotaryEmbedding:
    """The rotary module for a prior's sequence: cos/sin (L, d) in float32, with the condition row (position 0)
    zeroed when `zero_condition`."""
    angles = rotary_angles(positions, head_dim, theta, head_length, grid_shape)
    angles = torch.cat([angles, angles], dim=1)  # (L, d): rotate-half pairs (j, j + d/2) share an angle
    cos, sin = angles.cos().float(), angles.sin().float()
    if zero_condition:
        cos[0], sin[0] = 0.0, 0.0
    return TableRotaryEmbedding(cos, sin)
