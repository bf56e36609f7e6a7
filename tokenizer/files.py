"""What every tokenizer architecture shares: its saved folder (config.json + model.safetensors, on disk or on the
Hub), its fingerprint, and the checks on the images and code grids it is given.

A subclass sets `architecture` (the config's `architecture` value it is built for) and `config_class`; its
instances have `config` (with to_dict, fingerprint_dict and from_dict). tokenizer.loading.load_tokenizer picks
the class from a folder's config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .hub import load_weights_strict, push_pretrained, resolve_folder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_DTYPES = (torch.long, torch.int32, torch.int16, torch.uint8)


def read_tokenizer_config(folder: Path) -> dict:
    """The config dict of a tokenizer folder; folders written before `architecture` existed are "vqgan"."""
    return {"architecture": "vqgan", **json.loads((folder / CONFIG_NAME).read_text())}


class TokenizerFiles:
    """save_pretrained / from_pretrained / push_to_hub / fingerprint, shared by the tokenizer architectures."""

    architecture: str
    config_class: type

    def _set_config(self, config) -> None:
        """Keep `config` after checking that it is for this class's architecture."""
        if config.architecture != self.architecture:
            raise ValueError(f"architecture={config.architecture!r}: {type(self).__name__} builds "
                             f"{self.architecture!r}; build any with tokenizer.build_tokenizer")
        self.config = config

    @property
    def num_levels(self) -> int:
        """Code grids per image (config.num_levels)."""
        return self.config.num_levels

    def require_codes(self, purpose: str) -> None:
        """ValueError when this tokenizer has no code grids (a vae) but `purpose` needs them."""
        if self.num_levels == 0:
            raise ValueError(f"{purpose} needs code indices, and a {self.config.architecture!r} tokenizer has a "
                             f"Gaussian latent instead: use a vqgan or vqvae2 tokenizer (a vae samples its latents "
                             f"from N(0, I): ImageGenerationPipeline(vae) with no prior)")

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json and model.safetensors into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "model": f"tessera.{type(self).__name__}"})

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
    ):
        """Rebuild from a folder written by `save_pretrained`, or from a Hub repo id (only config.json and
        model.safetensors are fetched, into the Hugging Face cache). The folder must hold this architecture
        (tokenizer.load_tokenizer takes any), and every weight must be present and match."""
        folder = resolve_folder(
            name_or_path, (CONFIG_NAME, WEIGHTS_NAME), "a tokenizer folder", revision=revision,
            cache_dir=cache_dir, local_files_only=local_files_only, token=token,
        )
        config = read_tokenizer_config(folder)
        if config["architecture"] != cls.architecture:
            raise ValueError(f"{folder} holds a {config['architecture']!r} tokenizer, not a {cls.architecture!r} one: "
                             f"load it with tokenizer.load_tokenizer")
        model = cls(cls.config_class.from_dict(config))
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
