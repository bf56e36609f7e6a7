"""What every tokenizer architecture shares: its saved folder (tessera_hub.SavedModel: config.json naming the
architecture + model.safetensors, on disk or on the Hub), its fingerprint, and the checks on the images and code
grids it is given. A subclass sets `architecture` and `config_class`; tokenizer.loading.load_tokenizer picks the
class from a folder's config.
"""

from __future__ import annotations

import hashlib
import json

import torch

from tessera_hub import SavedModel

INDEX_DTYPES = (torch.long, torch.int32, torch.int16, torch.uint8)


class TokenizerFiles(SavedModel):
    """save_pretrained / from_pretrained / push_to_hub (huggingface_hub's mixin) and the fingerprint, shared by the
    tokenizer architectures. Folders written before config.json named the architecture hold a vqgan."""

    architecture: str
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
