"""The autoencoder every tokenizer architecture is built around: its config, and the convolutional encoder and
decoder (residual blocks, optional self-attention).

The encoder maps images (B, 3, H, W) to latents (B, z_channels, H/f, W/f) with f = 2**(len(channel_mult)-1);
the decoder maps latents back. Both are plain modules; a bottleneck sits between them (the quantiser of `VQGAN`).
The layout is taming-transformers' (which diffusers' VQModel and LlamaGen's VQ share): per level
`num_res_blocks` residual blocks (the decoder one more), each followed by self-attention on the levels in
`attention_levels`, a stride-2 downsample between levels; a middle of block, (attention,) block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


DOWNSAMPLE_FACTORS = (2, 4, 8, 16)


@dataclass
class AutoencoderConfig:
    """The encoder and decoder of every tokenizer architecture, and the images they take."""

    resolution: int = field(default=32, metadata={"flag": "resolution", "help": "image side in pixels"})
    in_channels: int = field(default=3, metadata={"flag": "in_channels", "help": "image channels"})
    channels: int = field(default=64, metadata={"help": "base width of the encoder and decoder"})
    downsample_factor: int = field(default=4, metadata={
        "help": f"one of {DOWNSAMPLE_FACTORS}: the code grid is resolution / factor (32 px at 4 -> 8x8 codes, "
                "at 2 -> 16x16)"})
    # One entry per level (log2(factor) + 1 of them); None picks (1, 2, 2, 4, 4) cut to that length.
    channel_mult: tuple[int, ...] | None = field(default=None, metadata={
        "help": "width multipliers per level, log2(factor)+1 entries; none = 1,2,2,4,4 cut to length"})
    num_res_blocks: int = field(default=1, metadata={"help": "residual blocks per level"})
    z_channels: int = field(default=64, metadata={"help": "channels of the latent before the code projection"})
    use_attention: bool = field(default=False, metadata={
        "flag": "attention", "help": "self-attention in the middle (between the two blocks at the lowest resolution)"})
    # taming's attn_resolutions as level indices, so the layout does not change with the image size.
    attention_levels: tuple[int, ...] = field(default=(), metadata={
        "help": "levels (0 = full resolution) whose every residual block is followed by self-attention"})
    dropout: float = field(default=0.0, metadata={
        "help": "dropout probability in every residual block of the encoders and decoders (a vqvae2's top level too)"})
    # diffusers' norm_num_groups; a width it does not divide takes the largest common divisor (tiny test configs).
    norm_groups: int = field(default=32, metadata={"help": "GroupNorm groups in the encoder and decoder"})

    def __post_init__(self) -> None:
        if self.downsample_factor not in DOWNSAMPLE_FACTORS:
            raise ValueError(f"downsample_factor={self.downsample_factor}: expected one of {DOWNSAMPLE_FACTORS}")
        levels = int(math.log2(self.downsample_factor)) + 1
        if self.channel_mult is None:
            self.channel_mult = (1, 2, 2, 4, 4)[:levels]
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.attention_levels = tuple(sorted(int(level) for level in self.attention_levels))
        if len(self.channel_mult) != levels:
            raise ValueError(
                f"channel_mult={list(self.channel_mult)} has {len(self.channel_mult)} entries; downsample factor "
                f"{self.downsample_factor} needs {levels} (one per level)"
            )
        check_attention_levels(self.attention_levels, levels)
        check_resolution(self.resolution, self.downsample_factor)
        for name in ("channels", "num_res_blocks", "z_channels", "in_channels", "norm_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected a positive integer")

    @property
    def grid_side(self) -> int:
        """Side of the encoder's latent grid: resolution / downsample_factor."""
        return self.resolution // self.downsample_factor

    @property
    def layout(self) -> LevelLayout:
        """The levels of the image encoder and decoder."""
        return LevelLayout(self.channels, self.channel_mult, self.num_res_blocks, self.use_attention, self.dropout,
                           self.attention_levels, self.norm_groups)


def check_resolution(resolution: int, factor: int) -> None:
    if resolution <= 0 or resolution % factor:
        raise ValueError(f"resolution={resolution} is not divisible by the downsample factor {factor}; expected a "
                         f"positive multiple of it")


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm whose group count divides `channels` (tiny test configs use e.g. 16 channels)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6)


class ResidualBlock(nn.Module):
    """norm → SiLU → conv, twice, plus a (1x1-projected when widths differ) skip."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0, groups: int = 32):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over all spatial positions, scaled by 1/sqrt(channels)."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, groups)
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


def _middle(channels: int, layout: "LevelLayout") -> nn.Sequential:
    layers: list[nn.Module] = [ResidualBlock(channels, channels, layout.dropout, layout.norm_groups)]
    if layout.use_attention:
        layers.append(SelfAttention(channels, layout.norm_groups))
    layers.append(ResidualBlock(channels, channels, layout.dropout, layout.norm_groups))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class LevelLayout:
    """The levels of an Encoder or a Decoder (0 = full resolution): widths channels·channel_mult, residual blocks
    per level, self-attention after each block of the `attention_levels` and (use_attention) in the middle."""

    channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    use_attention: bool = False
    dropout: float = 0.0
    attention_levels: tuple[int, ...] = ()
    norm_groups: int = 32

    def __post_init__(self) -> None:
        check_attention_levels(self.attention_levels, len(self.channel_mult))

    @property
    def widths(self) -> list[int]:
        return [self.channels * m for m in self.channel_mult]

    def level_blocks(self, level: int, width: int, out_width: int, count: int) -> list[nn.Module]:
        """`count` residual blocks of `level` from `width` to `out_width` channels, each followed by self-attention
        when the level is one of the attention levels."""
        blocks: list[nn.Module] = []
        for _ in range(count):
            blocks.append(ResidualBlock(width, out_width, self.dropout, self.norm_groups))
            width = out_width
            if level in self.attention_levels:
                blocks.append(SelfAttention(width, self.norm_groups))
        return blocks


class Encoder(nn.Module):
    """Images (B, in_channels, H, W) → latents (B, z_channels, H/f, W/f)."""

    def __init__(self, in_channels: int, z_channels: int, layout: LevelLayout):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, layout.channels, 3, padding=1)
        widths = layout.widths
        blocks: list[nn.Module] = []
        width = layout.channels
        for level, out_width in enumerate(widths):
            blocks += layout.level_blocks(level, width, out_width, layout.num_res_blocks)
            width = out_width
            if level < len(widths) - 1:
                blocks.append(Downsample(width))
        self.down = nn.Sequential(*blocks)
        self.middle = _middle(width, layout)
        self.norm_out = group_norm(width, layout.norm_groups)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.middle(self.down(self.conv_in(images)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latents (B, z_channels, h, w) → images (B, out_channels, h*f, w*f); mirrors `Encoder`."""

    def __init__(self, out_channels: int, z_channels: int, layout: LevelLayout):
        super().__init__()
        widths = layout.widths
        width = widths[-1]
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.middle = _middle(width, layout)
        blocks: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            # One block more than the encoder per level, as in taming's decoder.
            blocks += layout.level_blocks(level, width, widths[level], layout.num_res_blocks + 1)
            width = widths[level]
            if level > 0:
                blocks.append(Upsample(width))
        self.up = nn.Sequential(*blocks)
        self.norm_out = group_norm(width, layout.norm_groups)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the final conv: where the adaptive GAN weight compares gradient norms."""
        return self.conv_out.weight

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.up(self.middle(self.conv_in(latents)))
        return self.conv_out(F.silu(self.norm_out(h)))
