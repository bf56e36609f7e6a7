"""What every tokenizer architecture shares: the base of their configs (VQGANConfig, VQVAE2Config, VAEConfig:
the autoencoder composed with a bottleneck's own fields, config.json's flat layout, the code grids) and of their
modules (the saved folder through tessera_hub.SavedModel, the fingerprint, the checks of the images and code
grids they are given). tokenizer.models.loading picks a class from a folder's config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from tessera_hub import SavedModel, config_from_dict

from .autoencoder import AutoencoderConfig, Decoder
from .quantizer import QUANTIZER_CHOICE_FIELDS, QuantizerConfig

INDEX_DTYPES = (torch.long, torch.int32, torch.int16, torch.uint8)


AUTOENCODER_FIELDS = tuple(f.name for f in dataclasses.fields(AutoencoderConfig))
# Fields that config.json files written before each architecture had its own config held for every architecture
# (and a vae's kl_weight, now a loss weight): reading one ignores those its architecture does not have.
LEGACY_FIELDS = frozenset({"quantizer", "top_downsample_factor", "top_quantizer", "latent_channels", "kl_weight"})


@dataclass
class TokenizerConfig:
    """What the configs of the tokenizer architectures (VQGANConfig, VQVAE2Config, VAEConfig) share: the
    `autoencoder`, which each composes with its bottleneck's own fields; config.json's flat layout (the
    autoencoder's fields at the top level beside those); and the code grids, one per entry of `quantizers`."""

    # config.json's name for the architecture (the module class's `architecture`).
    saved_architecture: ClassVar[str]
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)

    def __post_init__(self) -> None:
        if isinstance(self.autoencoder, dict):
            self.autoencoder = AutoencoderConfig(**self.autoencoder)

    @property
    def quantizers(self) -> list[QuantizerConfig]:
        """One codebook per code grid, coarsest first; none for a Gaussian latent."""
        raise NotImplementedError

    @property
    def num_levels(self) -> int:
        """Code grids per image: 1 (vqgan), 2 (vqvae2), 0 (vae: a continuous latent, nothing for a prior)."""
        return len(self.quantizers)

    @property
    def codebook_sizes(self) -> list[int]:
        """One codebook size per level, coarsest first (as grid_shapes)."""
        return [quantizer.codebook_size for quantizer in self.quantizers]

    @property
    def total_downsample_factor(self) -> int:
        """Image side / the coarsest grid's side."""
        return self.autoencoder.downsample_factor

    @property
    def grid_shapes(self) -> list[tuple[int, int]]:
        """One (h, w) grid per level, coarsest first: [(h, w)] for a vqgan, [top, bottom] for a vqvae2."""
        return [(self.autoencoder.grid_side,) * 2] * self.num_levels

    def to_dict(self) -> dict:
        """config.json's layout: the autoencoder's fields, then the architecture's own."""
        data = dataclasses.asdict(self)
        return {**data.pop("autoencoder"), **data}

    def fingerprint_dict(self) -> dict:
        """What the fingerprint hashes: to_dict() with the architecture's name, and without `attention_levels`
        while it is empty, `norm_groups` at 32 and a vq quantizer's choice fields (fields newer than the first
        saved tokenizers), so older fingerprints still hold."""
        data = {"architecture": self.saved_architecture, **self.to_dict()}
        if not self.autoencoder.attention_levels:
            data.pop("attention_levels")
        if self.autoencoder.norm_groups == 32:
            data.pop("norm_groups")
        for quantizer in ("quantizer", "top_quantizer"):  # likewise the fields newer than vq alone, on a vq
            if isinstance(data.get(quantizer), dict) and data[quantizer]["kind"] == "vq":
                data[quantizer] = {k: v for k, v in data[quantizer].items() if k not in QUANTIZER_CHOICE_FIELDS}
        return data

    @classmethod
    def from_dict(cls, data: dict):
        """The config of a to_dict() dict, or of a config.json written before each architecture had its own config:
        those hold every architecture's fields (LEGACY_FIELDS; ignored where not this one's), and the oldest have
        no `downsample_factor`. Any other unknown key is a ValueError."""
        data = dict(data)
        named = data.pop("architecture", cls.saved_architecture)
        if named != cls.saved_architecture:
            raise ValueError(f"architecture={named!r}: a {cls.__name__} holds a {cls.saved_architecture!r} tokenizer")
        own = {f.name for f in dataclasses.fields(cls)} - {"autoencoder"}
        unknown = sorted(set(data) - own - set(AUTOENCODER_FIELDS) - LEGACY_FIELDS)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; expected a subset of "
                             f"{sorted(own | set(AUTOENCODER_FIELDS))}")
        if "downsample_factor" not in data and data.get("channel_mult"):  # folders saved before the field existed
            data["downsample_factor"] = 2 ** (len(data["channel_mult"]) - 1)
        # Built through tessera_hub's config_from_dict: every value checked against its field's type first.
        return config_from_dict(cls, {"autoencoder": {name: data[name] for name in AUTOENCODER_FIELDS if name in data},
                                      **{name: data[name] for name in own if name in data}})


class TokenizerModule(SavedModel, nn.Module, tags=["image-tokenizer"], pipeline_tag="image-feature-extraction"):
    """What the module of every tokenizer architecture shares: its config (checked to be its `config_class`, whose
    `saved_architecture` is the class's `architecture`), save_pretrained / from_pretrained / push_to_hub
    (huggingface_hub's mixin; folders written before config.json named the architecture hold a vqgan), the
    fingerprint, and the image decoder `decoder`."""

    architecture: str
    config_class: type[TokenizerConfig]
    decoder: Decoder
    kind_key = "architecture"
    legacy_kind = "vqgan"
    noun = "tokenizer"

    def _set_config(self, config) -> None:
        """Keep `config` after checking that it is this architecture's config class."""
        if not isinstance(config, self.config_class):
            raise ValueError(f"a {type(config).__name__}: {type(self).__name__} is built from a "
                             f"{self.config_class.__name__}; build any architecture with tokenizer.build_tokenizer")
        self.config = config

    @property
    def num_levels(self) -> int:
        """Code grids per image (config.num_levels)."""
        return self.config.num_levels

    def require_codes(self, purpose: str) -> None:
        """ValueError when this tokenizer has no code grids (a vae) but `purpose` needs them."""
        if self.num_levels == 0:
            raise ValueError(f"{purpose} needs code indices, and a {self.architecture!r} tokenizer has a "
                             f"Gaussian latent instead: use a vqgan or vqvae2 tokenizer (a vae samples its latents "
                             f"from N(0, I): ImageGenerationPipeline(vae) with no prior)")

    def card_title(self) -> str:
        return f"Tessera {self.architecture} tokenizer"

    def card_summary(self) -> str:
        """What the model card says this tokenizer is."""
        c = self.config
        side = c.autoencoder.resolution
        if self.num_levels == 0:
            codes = f"a Gaussian latent of shape {'x'.join(map(str, c.latent_shape))}"
        else:
            codes = " + ".join(f"a {h}x{w} grid of codes from {v}" for (h, w), v in zip(c.grid_shapes, c.codebook_sizes))
        parameters = sum(p.numel() for p in self.parameters())
        return (f"A {self.architecture} image tokenizer: {side}x{side}-pixel RGB images <-> {codes} "
                f"({parameters:,} parameters). Fingerprint `{self.fingerprint()[:16]}` (index files and priors "
                f"record it, so codes are never decoded by another tokenizer).")

    def card_snippet(self) -> str:
        decode = "latents" if self.num_levels == 0 else "codes"
        return ('from tokenizer import load_tokenizer\n\ntokenizer = load_tokenizer("{name}")\n'
                f'{decode} = tokenizer.encode(images)  # images (B, 3, H, W) in [-1, 1]\n'
                f'reconstructions = tokenizer.decode({decode})  # (B, 3, H, W) in [-1, 1]')

    def fingerprint(self) -> str:
        """sha256 of the config and every weight (names, dtypes, shapes, bytes): identifies this exact tokenizer.

        Index files record it, so codes are never read back through a different tokenizer.
        """
        digest = hashlib.sha256(json.dumps(self.config.fingerprint_dict(), sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return digest.hexdigest()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "config_class" in cls.__dict__:
            cls.architecture = cls.config_class.saved_architecture

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self._set_config(config)

    @property
    def last_layer(self) -> torch.Tensor:
        """The image decoder's last weight, where the adaptive GAN weight is measured."""
        return self.decoder.last_layer


def check_images(images: torch.Tensor, in_channels: int, factor: int) -> None:
    """ValueError unless `images` is a float (B, in_channels, H, W) tensor with H and W divisible by `factor`."""
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != in_channels:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images of shape {shape}: expected (B, {in_channels}, H, W)")
    if images.shape[2] % factor or images.shape[3] % factor:
        raise ValueError(f"images of size {tuple(images.shape[2:])}: expected H and W divisible by the downsample factor {factor}")
    if not images.is_floating_point():
        raise ValueError(f"images of dtype {images.dtype}: expected floats in [-1, 1]")


def check_indices(indices: torch.Tensor, codebook_size: int, what: str = "indices") -> None:
    """ValueError unless `indices` is an integer (B, h, w) tensor with values in [0, codebook_size)."""
    if not torch.is_tensor(indices) or indices.ndim != 3 or indices.dtype not in INDEX_DTYPES:
        desc = (tuple(indices.shape), indices.dtype) if torch.is_tensor(indices) else type(indices).__name__
        raise ValueError(f"{what} {desc}: expected an integer tensor of shape (B, h, w)")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= codebook_size):
        raise ValueError(f"{what} span [{int(indices.min())}, {int(indices.max())}]; expected values in [0, {codebook_size})")
