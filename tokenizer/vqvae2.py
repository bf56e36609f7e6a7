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
The config, files, fingerprint and checks are the VQ-GAN's (`VQGANConfig` with architecture="vqvae2").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .autoencoder import Decoder, Encoder, Upsample
from .files import TokenizerFiles, check_images, check_indices
from .quantizer import QuantizerOutput, VectorQuantizer, level_statistics
from .vqgan import QuantizedOutput, VQGANConfig


@dataclass
class VQVAE2Output(QuantizedOutput):
    reconstruction: torch.Tensor  # (B, 3, H, W)
    indices: tuple[torch.Tensor, torch.Tensor]  # top (B, H/ft, W/ft), bottom (B, H/f, W/f)
    quantizers: tuple[QuantizerOutput, QuantizerOutput]  # top, bottom

    @property
    def latent_loss(self) -> torch.Tensor:
        """Both levels' codebook + β·commitment losses."""
        return self.quantizers[0].loss + self.quantizers[1].loss


class VQVAE2(TokenizerFiles, nn.Module):
    """Images in [-1, 1] (B, 3, H, W) ↔ (top (B, H/ft, W/ft), bottom (B, H/f, W/f)) code indices."""

    architecture = "vqvae2"
    config_class = VQGANConfig

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self._set_config(config)
        z, top_dim, bottom_dim = config.z_channels, config.top_quantizer.code_dim, config.quantizer.code_dim
        shared = dict(num_res_blocks=config.num_res_blocks, use_attention=config.use_attention, dropout=config.dropout)
        # The top level works at the bottom encoder's deepest width, one resolution level per halving.
        top_width = config.channels * config.channel_mult[-1]
        top_mult = (1,) * (int(math.log2(config.top_downsample_factor)) + 1)
        # attention_levels index the image levels (channel_mult): the bottom encoder and the image decoder.
        levels = dict(attention_levels=config.attention_levels)
        self.bottom_encoder = Encoder(config.in_channels, config.channels, config.channel_mult, z_channels=z,
                                      **shared, **levels)
        self.top_encoder = Encoder(z, top_width, top_mult, z_channels=z, **shared)
        self.top_quant_conv = nn.Conv2d(z, top_dim, 1)
        self.top_quantizer = VectorQuantizer(config.top_quantizer)
        # The top codes decoded to the bottom grid, which the bottom quantiser sees beside the bottom features.
        self.top_decoder = Decoder(z, top_width, top_mult, z_channels=top_dim, **shared)
        self.bottom_quant_conv = nn.Conv2d(2 * z, bottom_dim, 1)
        self.quantizer = VectorQuantizer(config.quantizer)
        # The image decoder's input: the top codes upsampled to the bottom grid beside the bottom codes.
        self.top_upsample = nn.Sequential(
            nn.Conv2d(top_dim, z, 3, padding=1),
            *[Upsample(z) for _ in range(len(top_mult) - 1)],
        )
        self.post_quant_conv = nn.Conv2d(bottom_dim, z, 1)
        self.decoder = Decoder(config.in_channels, config.channels, config.channel_mult, z_channels=2 * z,
                               **shared, **levels)

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

    @property
    def last_layer(self) -> torch.Tensor:
        """The image decoder's last weight, where the adaptive GAN weight is measured."""
        return self.decoder.last_layer

    def window_stats(self) -> dict[str, float]:
        """Usage and perplexity of each level's codebook over its recent training batches (top_*, bottom_*), and
        `codebook_usage`, the lower of the two (quantizer.level_statistics)."""
        return level_statistics([self.top_quantizer.window_stats(), self.quantizer.window_stats()])

    # --- internals -----------------------------------------------------------------------------------

    def _quantize(self, images: torch.Tensor) -> tuple[QuantizerOutput, QuantizerOutput]:
        check_images(images, self.config.in_channels, self.config.total_downsample_factor)
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
