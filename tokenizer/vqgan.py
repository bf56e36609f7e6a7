"""VQ-GAN tokenizer: encoder → (project to code_dim) → vector quantiser → (project back) → decoder.

`encode` gives indices, `decode` takes indices, `embed` gives code vectors; `forward` is for training.
A saved model is a folder with config.json and model.safetensors, loaded strictly from disk or a Hub repo (hub.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .autoencoder import Decoder, Encoder
from .hub import load_weights_strict, push_pretrained, resolve_folder
from .quantizer import QuantizerConfig, QuantizerOutput, VectorQuantizer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DOWNSAMPLE_FACTORS = (4, 8, 16)


@dataclass
class VQGANConfig:
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
    use_attention: bool = field(default=False, metadata={"flag": "attention", "help": "self-attention at the lowest resolution"})
    dropout: float = 0.0
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = QuantizerConfig(**self.quantizer)
        if self.downsample_factor not in DOWNSAMPLE_FACTORS:
            raise ValueError(f"downsample_factor={self.downsample_factor}: expected one of {DOWNSAMPLE_FACTORS}")
        levels = int(math.log2(self.downsample_factor)) + 1
        if self.channel_mult is None:
            self.channel_mult = (1, 2, 2, 4, 4)[:levels]
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        if len(self.channel_mult) != levels:
            raise ValueError(
                f"channel_mult={list(self.channel_mult)} has {len(self.channel_mult)} entries; downsample factor "
                f"{self.downsample_factor} needs {levels} (one per level)"
            )
        if self.resolution <= 0 or self.resolution % self.downsample_factor:
            raise ValueError(
                f"resolution={self.resolution} is not divisible by the downsample factor "
                f"{self.downsample_factor}; expected a positive multiple of it"
            )
        for name in ("channels", "num_res_blocks", "z_channels", "in_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected a positive integer")

    @property
    def grid_shapes(self) -> list[tuple[int, int]]:
        """One (h, w) grid per level; a flat VQ-GAN has one level (VQ-VAE-2 will have two)."""
        side = self.resolution // self.downsample_factor
        return [(side, side)]

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VQGANConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VQGANConfig fields {unknown}; expected a subset of {sorted(known)}")
        if "downsample_factor" not in data and data.get("channel_mult"):  # folders saved before the field existed
            data = {**data, "downsample_factor": 2 ** (len(data["channel_mult"]) - 1)}
        return cls(**data)


@dataclass
class VQGANOutput:
    reconstruction: torch.Tensor  # (B, 3, H, W)
    indices: torch.Tensor  # (B, h, w)
    quantizer: QuantizerOutput


class VQGAN(nn.Module):
    """Images in [-1, 1] (B, 3, H, W) ↔ code indices (B, H/f, W/f)."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.config = config
        arch = dict(
            channels=config.channels,
            channel_mult=config.channel_mult,
            num_res_blocks=config.num_res_blocks,
            z_channels=config.z_channels,
            use_attention=config.use_attention,
            dropout=config.dropout,
        )
        self.encoder = Encoder(config.in_channels, **arch)
        self.quant_conv = nn.Conv2d(config.z_channels, config.quantizer.code_dim, 1)  # low-dim lookup space
        self.quantizer = VectorQuantizer(config.quantizer)
        self.post_quant_conv = nn.Conv2d(config.quantizer.code_dim, config.z_channels, 1)
        self.decoder = Decoder(config.in_channels, **arch)

    # --- public API ----------------------------------------------------------------------------------

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] → code indices (B, H/f, W/f), long."""
        self._check_images(images)
        return self.quantizer(self.quant_conv(self.encoder(images))).indices

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) → code vectors (B, code_dim, h, w)."""
        self._check_indices(indices)
        return self.quantizer.embed(indices)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) → images (B, 3, h*f, w*f) in about [-1, 1]."""
        return self.decode_codes(self.embed(indices))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, code_dim, h, w) → images; shared by `decode` and training."""
        return self.decoder(self.post_quant_conv(codes.to(self.post_quant_conv.weight.dtype)))

    def forward(self, images: torch.Tensor) -> VQGANOutput:
        """Training pass: reconstruction, indices and the quantiser's losses."""
        self._check_images(images)
        quantized = self.quantizer(self.quant_conv(self.encoder(images)))
        return VQGANOutput(self.decode_codes(quantized.quantized), quantized.indices, quantized)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's last weight, where the adaptive GAN weight is measured."""
        return self.decoder.last_layer

    def fingerprint(self) -> str:
        """sha256 of the config and every weight (names, dtypes, shapes, bytes): identifies this exact tokenizer.

        Index files record it, so codes are never read back through a different tokenizer.
        """
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return digest.hexdigest()

    # --- validation ----------------------------------------------------------------------------------

    def _check_images(self, images: torch.Tensor) -> None:
        factor = self.config.downsample_factor
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != self.config.in_channels:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"images of shape {shape}: expected (B, {self.config.in_channels}, H, W)")
        if images.shape[2] % factor or images.shape[3] % factor:
            raise ValueError(
                f"images of size {tuple(images.shape[2:])}: expected H and W divisible by the downsample factor {factor}"
            )
        if not images.is_floating_point():
            raise ValueError(f"images of dtype {images.dtype}: expected floats in [-1, 1]")

    def _check_indices(self, indices: torch.Tensor) -> None:
        if not torch.is_tensor(indices) or indices.ndim != 3 or indices.dtype not in (torch.long, torch.int32, torch.int16, torch.uint8):
            desc = (tuple(indices.shape), indices.dtype) if torch.is_tensor(indices) else type(indices).__name__
            raise ValueError(f"indices {desc}: expected an integer tensor of shape (B, h, w)")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.config.codebook_size):
            raise ValueError(
                f"indices span [{int(indices.min())}, {int(indices.max())}]; expected values in [0, {self.config.codebook_size})"
            )

    # --- files ---------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json and model.safetensors into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "model": "tessera.VQGAN"})

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str | torch.device = "cpu",
    ) -> "VQGAN":
        """Rebuild from a folder written by `save_pretrained`, or from a Hub repo id (only config.json and
        model.safetensors are fetched, into the Hugging Face cache). Every weight must be present and match."""
        folder = resolve_folder(
            name_or_path, (CONFIG_NAME, WEIGHTS_NAME), "a tokenizer folder", revision=revision,
            cache_dir=cache_dir, local_files_only=local_files_only, token=token,
        )
        model = cls(VQGANConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text())))
        load_weights_strict(model, folder / WEIGHTS_NAME, map_location)
        return model.eval()

    def push_to_hub(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        commit_message: str | None = None,
    ):
        """Upload what `save_pretrained` writes to the Hub repo `repo_id` (created if missing); returns the commit info."""
        return push_pretrained(
            self, repo_id, revision=revision, private=private, token=token, commit_message=commit_message
        )
