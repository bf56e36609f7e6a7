"""VQ-GAN tokenizer: encoder → (project to code_dim) → vector quantiser → (project back) → decoder.

`encode` gives indices, `decode` takes indices, `embed` gives code vectors; `forward` is for training.
A saved model is a folder with config.json and model.safetensors, loaded strictly from disk or a Hub repo (files.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .autoencoder import Decoder, Encoder, check_attention_levels
from .files import TokenizerFiles, check_images, check_indices
from .quantizer import QuantizerConfig, QuantizerOutput, VectorQuantizer

DOWNSAMPLE_FACTORS = (4, 8, 16)
ARCHITECTURES = ("vqgan", "vqvae2", "vae")
TOP_DOWNSAMPLE_FACTORS = (2, 4)
# Fields only one architecture uses. Every other architecture leaves them out of its fingerprint (and a vqgan
# leaves out `architecture` too), so that tokenizers saved before a field existed keep the fingerprint their
# index files record.
ARCHITECTURE_FIELDS = {"vqvae2": ("top_downsample_factor", "top_quantizer"), "vae": ("latent_channels", "kl_weight")}


@dataclass
class VQGANConfig:
    """The autoencoder of every tokenizer architecture: "vqgan" (one code grid, `VQGAN`), "vqvae2" (a top grid
    `top_downsample_factor` times coarser than the bottom one, `tokenizer.vqvae2.VQVAE2`) or "vae" (a Gaussian
    latent instead of codes, `tokenizer.vae.VAE`)."""

    architecture: str = field(default="vqgan", metadata={
        "help": f"one of {ARCHITECTURES}: one code grid (vqgan), a top and a bottom grid (vqvae2, VQ-VAE-2), or "
                f"a Gaussian latent (vae)"})
    resolution: int = field(default=32, metadata={"flag": "resolution", "help": "image side in pixels"})
    in_channels: int = field(default=3, metadata={"flag": "in_channels", "help": "image channels"})
    channels: int = field(default=64, metadata={"help": "base width of the encoder and decoder"})
    downsample_factor: int = field(default=4, metadata={
        "help": f"one of {DOWNSAMPLE_FACTORS}: the code grid is resolution / factor (32 px at 4 -> 8x8 codes)"})
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
    dropout: float = 0.0
    # The (bottom) grid's codebook; a vqvae2's top grid has its own, with every option of this one.
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    top_downsample_factor: int = field(default=2, metadata={
        "help": f"vqvae2: one of {TOP_DOWNSAMPLE_FACTORS}, how much coarser the top grid is than the bottom one"})
    top_quantizer: QuantizerConfig = field(default_factory=QuantizerConfig, metadata={
        "flag_prefix": "top_", "help": "vqvae2 top codebook"})
    latent_channels: int = field(default=4, metadata={
        "help": "vae: channels of the Gaussian latent per cell (resolution/f squared cells)"})
    # The KL is taken per image dimension (nats / (3·H·W)), the scale of the mean reconstruction loss, so with the
    # L1 loss kl_weight is the scale b of the Laplace likelihood whose ELBO is trained (L2: 2σ² of a Gaussian).
    # 0.3: at 0.01 the latents spend ~880 nats per emoji and samples from N(0, I) are noise; at 0.3 they spend
    # ~200 and the samples have shape (README, "The plain VAE").
    kl_weight: float = field(default=0.3, metadata={
        "help": "vae: β_KL on KL(q(z|x) || N(0, I)) per image dimension; with the L1 loss, the Laplace scale b"})

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = QuantizerConfig(**self.quantizer)
        if isinstance(self.top_quantizer, dict):
            self.top_quantizer = QuantizerConfig(**self.top_quantizer)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture={self.architecture!r}: expected one of {list(ARCHITECTURES)}")
        if self.top_downsample_factor not in TOP_DOWNSAMPLE_FACTORS:
            raise ValueError(f"top_downsample_factor={self.top_downsample_factor}: expected one of {TOP_DOWNSAMPLE_FACTORS}")
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
        if self.resolution <= 0 or self.resolution % self.total_downsample_factor:
            raise ValueError(
                f"resolution={self.resolution} is not divisible by the downsample factor "
                f"{self.total_downsample_factor}; expected a positive multiple of it"
            )
        for name in ("channels", "num_res_blocks", "z_channels", "in_channels", "latent_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected a positive integer")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight={self.kl_weight}: expected a non-negative value")

    @property
    def num_levels(self) -> int:
        """Code grids per image: 1 (vqgan), 2 (vqvae2), 0 (vae: a continuous latent, nothing for a prior)."""
        return {"vqgan": 1, "vqvae2": 2, "vae": 0}[self.architecture]

    @property
    def total_downsample_factor(self) -> int:
        """Image side / the coarsest grid's side."""
        return self.downsample_factor * (self.top_downsample_factor if self.num_levels == 2 else 1)

    @property
    def grid_shapes(self) -> list[tuple[int, int]]:
        """One (h, w) grid per level, coarsest first: [(h, w)] for a vqgan, [top, bottom] for a vqvae2."""
        side = self.resolution // self.downsample_factor
        if self.num_levels == 2:
            return [(side // self.top_downsample_factor,) * 2, (side, side)]
        return [(side, side)] * self.num_levels

    @property
    def autoencoder_settings(self) -> dict:
        """The keyword arguments of autoencoder.Encoder and Decoder after their image channels."""
        return dict(channels=self.channels, channel_mult=self.channel_mult, num_res_blocks=self.num_res_blocks,
                    z_channels=self.z_channels, use_attention=self.use_attention, dropout=self.dropout,
                    attention_levels=self.attention_levels)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """A vae's latent per image: (latent_channels, resolution/f, resolution/f)."""
        side = self.resolution // self.downsample_factor
        return (self.latent_channels, side, side)

    @property
    def codebook_sizes(self) -> list[int]:
        """One codebook size per level, coarsest first (as grid_shapes)."""
        if self.num_levels == 2:
            return [self.top_quantizer.codebook_size, self.quantizer.codebook_size]
        return [self.quantizer.codebook_size] * self.num_levels

    @property
    def codebook_size(self) -> int:
        """The one codebook of a one-level model; a two-level one has one per level (codebook_sizes)."""
        if self.num_levels == 0:
            raise ValueError(f"a {self.architecture} tokenizer has a Gaussian latent, no codebook")
        if self.num_levels != 1:
            raise ValueError(f"a {self.architecture} tokenizer has one codebook per level: use codebook_sizes "
                             f"({self.codebook_sizes}), not codebook_size")
        return self.quantizer.codebook_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint_dict(self) -> dict:
        """to_dict() without the fields of the other architectures (see ARCHITECTURE_FIELDS)."""
        data = self.to_dict()
        for architecture, names in ARCHITECTURE_FIELDS.items():
            if architecture != self.architecture:
                for name in names:
                    data.pop(name)
        if self.architecture == "vqgan":
            data.pop("architecture")
        if not self.attention_levels:  # a field newer than the first saved tokenizers
            data.pop("attention_levels")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "VQGANConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VQGANConfig fields {unknown}; expected a subset of {sorted(known)}")
        if "downsample_factor" not in data and data.get("channel_mult"):  # folders saved before the field existed
            data = {**data, "downsample_factor": 2 ** (len(data["channel_mult"]) - 1)}
        return cls(**data)


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


class VQGAN(TokenizerFiles, nn.Module):
    """Images in [-1, 1] (B, 3, H, W) ↔ code indices (B, H/f, W/f)."""

    architecture = "vqgan"
    config_class = VQGANConfig

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self._set_config(config)
        arch = config.autoencoder_settings
        self.encoder = Encoder(config.in_channels, **arch)
        self.quant_conv = nn.Conv2d(config.z_channels, config.quantizer.code_dim, 1)  # low-dim lookup space
        self.quantizer = VectorQuantizer(config.quantizer)
        self.post_quant_conv = nn.Conv2d(config.quantizer.code_dim, config.z_channels, 1)
        self.decoder = Decoder(config.in_channels, **arch)

    # --- public API ----------------------------------------------------------------------------------

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] → code indices (B, H/f, W/f), long."""
        check_images(images, self.config.in_channels, self.config.downsample_factor)
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
        check_images(images, self.config.in_channels, self.config.downsample_factor)
        quantized = self.quantizer(self.quant_conv(self.encoder(images)))
        return VQGANOutput(self.decode_codes(quantized.quantized), quantized.indices, quantized)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's last weight, where the adaptive GAN weight is measured."""
        return self.decoder.last_layer

    def window_stats(self) -> dict[str, float]:
        """Codebook usage and perplexity over the quantiser's recent training batches."""
        return self.quantizer.window_stats()
