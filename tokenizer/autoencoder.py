"""Convolutional encoder and decoder of the VQ-GAN (residual blocks, optional self-attention).

The encoder maps images (B, 3, H, W) to latents (B, z_channels, H/f, W/f) with f = 2**(len(channel_mult)-1);
the decoder maps latents back. Both are plain modules; the quantiser sits between them in `VQGAN`.
The layout is taming-transformers' (which diffusers' VQModel and LlamaGen's VQ share): per level
`num_res_blocks` residual blocks (the decoder one more), each followed by self-attention on the levels in
`attention_levels`, a stride-2 downsample between levels; a middle of block, (attention,) block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm whose group count divides `channels` (tiny test configs use e.g. 16 channels)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6)


class ResidualBlock(nn.Module):
    """norm → SiLU → conv, twice, plus a (1x1-projected when widths differ) skip."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over all spatial positions, scaled by 1/sqrt(channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)  # each (B, h*w, C)
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv with asymmetric padding so H and W halve exactly."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv (avoids transposed-conv checkerboards)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def check_attention_levels(attention_levels: Sequence[int], num_levels: int) -> None:
    """Every entry a level index: 0 (full resolution) to num_levels - 1 (the latent's resolution)."""
    bad = [level for level in attention_levels if not 0 <= level < num_levels]
    if bad:
        raise ValueError(f"attention_levels={list(attention_levels)}: {bad} out of range; expected level indices "
                         f"0 (full resolution) to {num_levels - 1} (the lowest)")


def _middle(channels: int, use_attention: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [ResidualBlock(channels, channels, dropout)]
    if use_attention:
        layers.append(SelfAttention(channels))
    layers.append(ResidualBlock(channels, channels, dropout))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Images (B, in_channels, H, W) → latents (B, z_channels, H/f, W/f)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        z_channels: int,
        use_attention: bool,
        dropout: float = 0.0,
        attention_levels: Sequence[int] = (),
    ):
        super().__init__()
        check_attention_levels(attention_levels, len(channel_mult))
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        widths = [channels * m for m in channel_mult]
        blocks: list[nn.Module] = []
        width = channels
        for level, out_width in enumerate(widths):
            for _ in range(num_res_blocks):
                blocks.append(ResidualBlock(width, out_width, dropout))
                width = out_width
                if level in attention_levels:
                    blocks.append(SelfAttention(width))
            if level < len(widths) - 1:
                blocks.append(Downsample(width))
        self.down = nn.Sequential(*blocks)
        self.middle = _middle(width, use_attention, dropout)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.middle(self.down(self.conv_in(images)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latents (B, z_channels, h, w) → images (B, out_channels, h*f, w*f); mirrors `Encoder`."""

    def __init__(
        self,
        out_channels: int,
        channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        z_channels: int,
        use_attention: bool,
        dropout: float = 0.0,
        attention_levels: Sequence[int] = (),
    ):
        super().__init__()
        check_attention_levels(attention_levels, len(channel_mult))
        widths = [channels * m for m in channel_mult]
        width = widths[-1]
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.middle = _middle(width, use_attention, dropout)
        blocks: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            # One block more than the encoder per level, as in taming's decoder.
            for _ in range(num_res_blocks + 1):
                blocks.append(ResidualBlock(width, widths[level], dropout))
                width = widths[level]
                if level in attention_levels:
                    blocks.append(SelfAttention(width))
            if level > 0:
                blocks.append(Upsample(width))
        self.up = nn.Sequential(*blocks)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the final conv: where the adaptive GAN weight compares gradient norms."""
        return self.conv_out.weight

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.up(self.middle(self.conv_in(latents)))
        return self.conv_out(F.silu(self.norm_out(h)))
