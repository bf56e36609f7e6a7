"""VQ-GAN tokenizer: encoder → (project to code_dim) → vector quantiser → (project back) → decoder.

`encode` gives indices, `decode` takes indices, `embed` gives code vectors; `forward` is for training.
A saved model is a folder with config.json and model.safetensors, loaded strictly from disk or a Hub repo (files.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .autoencoder import Decoder, Encoder
from .base import TokenizerConfig, TokenizerModule, check_images, check_indices
from .quantizer import QuantizerConfig, QuantizerOutput
from .quantizers import build_quantizer


@dataclass
class VQGANConfig(TokenizerConfig):
    """One code grid: the autoencoder's latents quantised by one codebook."""

    saved_architecture: ClassVar[str] = "vqgan"
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.quantizer, dict):
            self.quantizer = QuantizerConfig(**self.quantizer)

    @property
    def quantizers(self) -> list[QuantizerConfig]:
        return [self.quantizer]

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def fingerprint_dict(self) -> dict:
        """TokenizerConfig.fingerprint_dict without the architecture's name: a vqgan's fingerprint predates it."""
        data = super().fingerprint_dict()
        data.pop("architecture")
        return data


class QuantizedOutput:
    """What the training loop reads beside `latent_loss` from the output of a model with codebooks (VQGANOutput,
    VQVAE2Output); a vae's output has its own."""

    latent_name = "quantizer_loss"  # the name the training logs give `latent_loss`

    @property
    def latent_logs(self) -> dict[str, float]:
        """Nothing beside the loss (a vae adds its KL in nats)."""
        return {}


@dataclass
class VQGANOutput(QuantizedOutput):
    reconstruction: torch.Tensor  # (B, 3, H, W)
    indices: torch.Tensor  # (B, h, w)
    quantizer: QuantizerOutput

    @property
    def latent_loss(self) -> torch.Tensor:
        """What the bottleneck adds to the training objective: the quantiser's codebook + β·commitment loss."""
        return self.quantizer.loss


class VQGAN(TokenizerModule):
    """Images in [-1, 1] (B, 3, H, W) ↔ code indices (B, H/f, W/f)."""

    config_class = VQGANConfig

    def __init__(self, config: VQGANConfig):
        super().__init__(config)
        autoencoder = config.autoencoder
        self.encoder = Encoder(autoencoder.in_channels, autoencoder.z_channels, autoencoder.layout)
        self.quant_conv = nn.Conv2d(autoencoder.z_channels, config.quantizer.code_dim, 1)  # low-dim lookup space
        self.quantizer = build_quantizer(config.quantizer)
        self.post_quant_conv = nn.Conv2d(config.quantizer.code_dim, autoencoder.z_channels, 1)
        self.decoder = Decoder(autoencoder.in_channels, autoencoder.z_channels, autoencoder.layout)

    # --- public API ----------------------------------------------------------------------------------

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] → code indices (B, H/f, W/f), long."""
        check_images(images, self.config.autoencoder.in_channels, self.config.autoencoder.downsample_factor)
        return self.quantizer(self.quant_conv(self.encoder(images))).indices

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) → code vectors (B, code_dim, h, w)."""
        check_indices(indices, self.config.codebook_size)
        return self.quantizer.embed(indices)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) → images (B, 3, h*f, w*f) in about [-1, 1]."""
        return self.decode_codes(self.embed(indices))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, code_dim, h, w) → images; shared by `decode` and training."""
        return self.decoder(self.post_quant_conv(codes.to(self.post_quant_conv.weight.dtype)))

    def encode_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The form every architecture shares: one grid per level, coarsest first; here [(B, h, w)]."""
        return [self.encode(images)]

    def decode_levels(self, grids: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One grid per level, coarsest first (here one) → images."""
        if len(grids) != 1:
            raise ValueError(f"{len(grids)} code grids: a vqgan tokenizer has one level")
        return self.decode(grids[0])

    def forward(self, images: torch.Tensor) -> VQGANOutput:
        """Training pass: reconstruction, indices and the quantiser's losses."""
        check_images(images, self.config.autoencoder.in_channels, self.config.autoencoder.downsample_factor)
        quantized = self.quantizer(self.quant_conv(self.encoder(images)))
        return VQGANOutput(self.decode_codes(quantized.quantized), quantized.indices, quantized)

    def window_stats(self) -> dict[str, float]:
        """Codebook usage and perplexity over the quantiser's recent training batches."""
        return self.quantizer.window_stats()
