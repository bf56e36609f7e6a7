"""VQ-VAE-2 tokenizer (Razavi et al. 2019): a top code grid for global shape, a finer bottom grid for detail.

    images (B, 3, H, W)
      -> bottom encoder (÷f)                       enc_b (B, z, H/f, W/f)
      -> top encoder (÷t)                          enc_t (B, z, H/ft, W/ft) -> quantise -> top codes
      -> top decoder (×t) on the top codes         dec_t (B, z, H/f, W/f)
      -> [enc_b, dec_t] -> quantise                -> bottom codes (B, H/f, W/f)
    decoder: [top codes upsampled ×t, bottom codes] (B, 2z, H/f, W/f) -> images

The top is quantised first and the bottom is quantised knowing it, so the bottom codes carry what the top
ones miss; the decoder reads both levels. f = `downsample_factor` (4), t = `top_downsample_factor` (2). Each
level has its own codebook (`quantizer` for the bottom, `top_quantizer` for the top) with every quantiser option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .autoencoder import Decoder, Encoder, LevelLayout, Upsample, check_resolution
from .base import TokenizerConfig, TokenizerModule, check_images, check_indices
from .quantizer import QuantizerConfig, QuantizerOutput, level_statistics
from .quantizers import build_quantizer
from .vqgan import QuantizedOutput

TOP_DOWNSAMPLE_FACTORS = (2, 4)


@dataclass
class VQVAE2Config(TokenizerConfig):
    """Two code grids: the bottom one at the autoencoder's grid, the top one `top_downsample_factor` times coarser,
    each with its own codebook."""

    saved_architecture: ClassVar[str] = "vqvae2"
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)  # the bottom grid's codebook
    top_downsample_factor: int = field(default=2, metadata={
        "help": f"vqvae2: one of {TOP_DOWNSAMPLE_FACTORS}, how much coarser the top grid is than the bottom one"})
    top_quantizer: QuantizerConfig = field(default_factory=QuantizerConfig, metadata={
        "flag_prefix": "top_", "help": "vqvae2 top codebook"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.quantizer, dict):
            self.quantizer = QuantizerConfig(**self.quantizer)
        if isinstance(self.top_quantizer, dict):
            self.top_quantizer = QuantizerConfig(**self.top_quantizer)
        if self.top_downsample_factor not in TOP_DOWNSAMPLE_FACTORS:
            raise ValueError(f"top_downsample_factor={self.top_downsample_factor}: expected one of {TOP_DOWNSAMPLE_FACTORS}")
        check_resolution(self.autoencoder.resolution, self.total_downsample_factor)

    @property
    def quantizers(self) -> list[QuantizerConfig]:
        return [self.top_quantizer, self.quantizer]

    @property
    def codebook_size(self) -> int:
        raise ValueError(f"a {self.saved_architecture} tokenizer has one codebook per level: use codebook_sizes "
                         f"({self.codebook_sizes}), not codebook_size")

    @property
    def total_downsample_factor(self) -> int:
        return self.autoencoder.downsample_factor * self.top_downsample_factor

    @property
    def grid_shapes(self) -> list[tuple[int, int]]:
        side = self.autoencoder.grid_side
        return [(side // self.top_downsample_factor,) * 2, (side, side)]


@dataclass
class VQVAE2Output(QuantizedOutput):
    reconstruction: torch.Tensor  # (B, 3, H, W)
    indices: tuple[torch.Tensor, torch.Tensor]  # top (B, H/ft, W/ft), bottom (B, H/f, W/f)
    quantizers: tuple[QuantizerOutput, QuantizerOutput]  # top, bottom

    @property
    def latent_loss(self) -> torch.Tensor:
        """Both levels' codebook + β·commitment losses."""
        return self.quantizers[0].loss + self.quantizers[1].loss


class VQVAE2(TokenizerModule):
    """Images in [-1, 1] (B, 3, H, W) ↔ (top (B, H/ft, W/ft), bottom (B, H/f, W/f)) code indices."""

    config_class = VQVAE2Config

    def __init__(self, config: VQVAE2Config):
        super().__init__(config)
        image = config.autoencoder
        z, top_dim, bottom_dim = image.z_channels, config.top_quantizer.code_dim, config.quantizer.code_dim
        # The top level works at the bottom encoder's deepest width, one resolution level per halving; the
        # attention levels index the image levels (the bottom encoder's and the image decoder's).
        top_levels = int(math.log2(config.top_downsample_factor)) + 1
        top = LevelLayout(image.channels * image.channel_mult[-1], (1,) * top_levels, image.num_res_blocks,
                          image.use_attention, image.dropout, norm_groups=image.norm_groups)
        self.bottom_encoder = Encoder(image.in_channels, z, image.layout)
        self.top_encoder = Encoder(z, z, top)
        self.top_quant_conv = nn.Conv2d(z, top_dim, 1)
        self.top_quantizer = build_quantizer(config.top_quantizer)
        # The top codes decoded to the bottom grid, which the bottom quantiser sees beside the bottom features.
        self.top_decoder = Decoder(z, top_dim, top)
        self.bottom_quant_conv = nn.Conv2d(2 * z, bottom_dim, 1)
        self.quantizer = build_quantizer(config.quantizer)
        # The image decoder's input: the top codes upsampled to the bottom grid beside the bottom codes.
        self.top_upsample = nn.Sequential(
            nn.Conv2d(top_dim, z, 3, padding=1),
            *[Upsample(z) for _ in range(len(top.channel_mult) - 1)],
        )
        self.post_quant_conv = nn.Conv2d(bottom_dim, z, 1)
        self.decoder = Decoder(image.in_channels, 2 * z, image.layout)

    # --- public API ----------------------------------------------------------------------------------

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [-1, 1] → (top (B, H/ft, W/ft), bottom (B, H/f, W/f)) code indices, long."""
        top, bottom = self._quantize(images)
        return top.indices, bottom.indices

    def embed(self, indices: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(top, bottom) code indices → (top (B, D_t, h_t, w_t), bottom (B, D_b, h, w)) code vectors."""
        top, bottom = self._check_grids(indices)
        return self.top_quantizer.embed(top), self.quantizer.embed(bottom)

    def decode(self, indices: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(top, bottom) code indices → images (B, 3, H, W) in about [-1, 1]."""
        return self.decode_codes(*self.embed(indices))

    def decode_codes(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        """Code vectors of both levels → images; shared by `decode` and training."""
        dtype = self.post_quant_conv.weight.dtype
        joined = torch.cat([self.top_upsample(top.to(dtype)), self.post_quant_conv(bottom.to(dtype))], dim=1)  # (B, 2z, h, w)
        return self.decoder(joined)

    def encode_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The form every architecture shares: one grid per level, coarsest first: [top, bottom]."""
        return list(self.encode(images))

    def decode_levels(self, grids: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """[top, bottom] → images."""
        return self.decode(tuple(grids))

    def forward(self, images: torch.Tensor) -> VQVAE2Output:
        """Training pass: reconstruction, both levels' indices and quantiser losses."""
        top, bottom = self._quantize(images)
        reconstruction = self.decode_codes(top.quantized, bottom.quantized)
        return VQVAE2Output(reconstruction, (top.indices, bottom.indices), (top, bottom))

    def window_stats(self) -> dict[str, float]:
        """Usage and perplexity of each level's codebook over its recent training batches (top_*, bottom_*), and
        `codebook_usage`, the lower of the two (quantizer.level_statistics)."""
        return level_statistics([self.top_quantizer.window_stats(), self.quantizer.window_stats()])

    # --- internals -----------------------------------------------------------------------------------

    def _quantize(self, images: torch.Tensor) -> tuple[QuantizerOutput, QuantizerOutput]:
        check_images(images, self.config.autoencoder.in_channels, self.config.total_downsample_factor)
        features = self.bottom_encoder(images)  # (B, z, H/f, W/f)
        top = self.top_quantizer(self.top_quant_conv(self.top_encoder(features)))  # codes (B, D_t, H/ft, W/ft)
        joined = torch.cat([features, self.top_decoder(top.quantized.to(features.dtype))], dim=1)  # (B, 2z, H/f, W/f)
        return top, self.quantizer(self.bottom_quant_conv(joined))

    def _check_grids(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(indices, (tuple, list)) or len(indices) != 2:
            raise ValueError(f"{type(indices).__name__} of code grids: expected (top, bottom), one grid per level")
        top, bottom = indices
        check_indices(top, self.config.top_quantizer.codebook_size, "top indices")
        check_indices(bottom, self.config.quantizer.codebook_size, "bottom indices")
        t = self.config.top_downsample_factor
        if top.shape[0] != bottom.shape[0] or (top.shape[1] * t, top.shape[2] * t) != tuple(bottom.shape[1:]):
            raise ValueError(f"top grid {tuple(top.shape)} and bottom grid {tuple(bottom.shape)}: expected the same "
                             f"batch and a top grid {t}x coarser than the bottom one")
        return top, bottom
