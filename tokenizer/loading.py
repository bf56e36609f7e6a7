"""Any tokenizer architecture from its config or its saved folder: the one place that maps
`VQGANConfig.architecture` to a class."""

from __future__ import annotations

from pathlib import Path

import torch

from .files import CONFIG_NAME, WEIGHTS_NAME, read_tokenizer_config
from .hub import resolve_folder
from .vqgan import VQGAN, VQGANConfig
from .vae import VAE
from .vqvae2 import VQVAE2

TOKENIZER_CLASSES = {"vqgan": VQGAN, "vqvae2": VQVAE2, "vae": VAE}
Tokenizer = VQGAN | VQVAE2 | VAE


def build_tokenizer(config: VQGANConfig) -> Tokenizer:
    """A freshly initialised tokenizer of `config.architecture`."""
    return TOKENIZER_CLASSES[config.architecture](config)


def load_tokenizer(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    map_location: str | torch.device = "cpu",
) -> Tokenizer:
    """A saved tokenizer of any architecture (a folder or a Hub repo id), with its class's from_pretrained."""
    hub = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    folder = resolve_folder(name_or_path, (CONFIG_NAME, WEIGHTS_NAME), "a tokenizer folder", **hub)
    architecture = read_tokenizer_config(folder)["architecture"]
    if architecture not in TOKENIZER_CLASSES:
        raise ValueError(f"{folder / CONFIG_NAME}: architecture {architecture!r}; expected one of {list(TOKENIZER_CLASSES)}")
    return TOKENIZER_CLASSES[architecture].from_pretrained(folder, map_location=map_location)
