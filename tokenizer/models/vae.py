"""The plain VAE (Kingma & Welling 2014) that both VQ models grow from: the same encoder and decoder around a
Gaussian bottleneck instead of a codebook.

    images (B, 3, H, W) -> encoder (÷f) -> (B, z, h, w) -> 1x1 conv -> mean, logvar  (B, C, h, w) each
    training:  latent = mean + exp(logvar / 2)·ε, ε ~ N(0, I)   (reparameterised: gradients reach mean and logvar)
    inference: latent = mean
    latent -> 1x1 conv -> decoder -> images

The prior over latents is N(0, I), so the model generates by itself: `decode(torch.randn(B, *latent_shape))`
(pipelines.ImageGenerationPipeline does it with no prior). KL(q(z|x) || N(0, I)) has the closed form
½ Σ (μ² + σ² − 1 − log σ²), summed over the C·h·w latent dimensions: nats per image; the training loss
weighs it (tokenizer.losses, `kl_weight`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .autoencoder import Decoder, Encoder
from .base import TokenizerConfig, TokenizerModule, check_images
from .quantizer import QuantizerConfig


@dataclass
class VAEConfig(TokenizerConfig):
    """A Gaussian latent of `latent_channels` per cell of the autoencoder's grid instead of codes."""

    saved_architecture: ClassVar[str] = "vae"
    latent_channels: int = field(default=4, metadata={
        "help": "vae: channels of the Gaussian latent per cell (resolution/f squared cells)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels={self.latent_channels}: expected a positive integer")

    @property
    def quantizers(self) -> list[QuantizerConfig]:
        return []

    @property
    def codebook_size(self) -> int:
        raise ValueError(f"a {self.saved_architecture} tokenizer has a Gaussian latent, no codebook")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The latent per image: (latent_channels, resolution/f, resolution/f)."""
        side = self.autoencoder.grid_side
        return (self.latent_channels, side, side)


# log σ² is clamped as in LDM's DiagonalGaussianDistribution: exp() stays finite while the heads are untrained.
LOGVAR_RANGE = (-30.0, 20.0)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) in nats, summed over every dimension but the first: (B, ...) → (B,)."""
    kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float())
    return kl.flatten(1).sum(1)


@dataclass
class VAEOutput:
    reconstruction: torch.Tensor  # (B, 3, H, W)
    mean: torch.Tensor  # (B, C, h, w) of q(z|x)
    logvar: torch.Tensor  # (B, C, h, w)
    kl: torch.Tensor  # (B,) KL(q(z|x) || N(0, I)) in nats per image
    # The name the training logs give the KL's term of the loss (VQGANLoss.latent_loss).
    latent_name = "kl_loss"

    @property
    def latent_logs(self) -> dict[str, float]:
        """The batch's mean KL in nats per image, beside the loss terms in the training logs."""
        return {"kl_nats": float(self.kl.detach().mean())}


class VAE(TokenizerModule):
    """Images in [-1, 1] (B, 3, H, W) ↔ Gaussian latents (B, latent_channels, H/f, W/f)."""

    config_class = VAEConfig

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        autoencoder = config.autoencoder
        self.encoder = Encoder(autoencoder.in_channels, autoencoder.z_channels, autoencoder.layout)
        self.moments = nn.Conv2d(autoencoder.z_channels, 2 * config.latent_channels, 1)  # mean and log σ², stacked
        self.post_latent_conv = nn.Conv2d(config.latent_channels, autoencoder.z_channels, 1)
        self.decoder = Decoder(autoencoder.in_channels, autoencoder.z_channels, autoencoder.layout)

    # --- public API ----------------------------------------------------------------------------------

    def encode_distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [-1, 1] → q(z|x) as (mean, logvar), each (B, C, H/f, W/f)."""
        check_images(images, self.config.autoencoder.in_channels, self.config.autoencoder.downsample_factor)
        mean, logvar = self.moments(self.encoder(images)).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] → the posterior means (B, C, H/f, W/f): the latent used at inference."""
        return self.encode_distribution(images)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, h, w) → images (B, 3, h*f, w*f) in about [-1, 1]."""
        channels = self.config.latent_channels
        if not torch.is_tensor(latents) or latents.ndim != 4 or latents.shape[1] != channels \
                or not latents.is_floating_point():
            desc = (tuple(latents.shape), latents.dtype) if torch.is_tensor(latents) else type(latents).__name__
            raise ValueError(f"latents {desc}: expected a float tensor (B, {channels}, h, w)")
        return self.decoder(self.post_latent_conv(latents.to(self.post_latent_conv.weight.dtype)))

    @staticmethod
    def sample_posterior(mean: torch.Tensor, logvar: torch.Tensor,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mean + exp(logvar / 2)·ε, ε ~ N(0, I) drawn from `generator` (default: torch's global one)."""
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (0.5 * logvar).exp() * noise

    def forward(self, images: torch.Tensor) -> VAEOutput:
        """Training pass: the reconstruction of a reparameterised sample (of the mean in eval mode), q(z|x), KL."""
        mean, logvar = self.encode_distribution(images)
        latents = self.sample_posterior(mean, logvar) if self.training else mean
        return VAEOutput(self.decode(latents), mean, logvar, gaussian_kl(mean, logvar))

    def window_stats(self) -> dict[str, float]:
        """No codebook, so no usage to report (the KL is in each step's logs)."""
        return {}
