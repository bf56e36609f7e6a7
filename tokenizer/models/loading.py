"""Any tokenizer architecture from its config or its saved folder: the one place that maps an architecture to
its class."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import TokenizerConfig, TokenizerModule
from .vae import VAE
from .vqgan import VQGAN
from .vqvae2 import VQVAE2

TOKENIZER_CLASSES = {cls.architecture: cls for cls in (VQGAN, VQVAE2, VAE)}
Tokenizer = VQGAN | VQVAE2 | VAE


def build_tokenizer(config: TokenizerConfig) -> Tokenizer:
    """A freshly initialised tokenizer of the architecture whose config class `config` is."""
    by_config = {cls.config_class: cls for cls in TOKENIZER_CLASSES.values()}
    if type(config) not in by_config:
        raise ValueError(f"a {type(config).__name__}: expected one of {[c.__name__ for c in by_config]}")
    return by_config[type(config)](config)


def load_tokenizer(name_or_path: str | Path, *, map_location: str | torch.device = "cpu", **hub) -> Tokenizer:
    """A saved tokenizer of any architecture (a folder or a Hub repo id), with its class's from_pretrained;
    `hub`: huggingface_hub's revision, cache_dir, local_files_only, token."""
    folder = TokenizerModule.resolve(name_or_path, **hub)
    architecture, _ = TokenizerModule.read_config(folder)
    if architecture not in TOKENIZER_CLASSES:
        raise ValueError(f"{folder}/config.json: architecture {architecture!r}; expected one of {list(TOKENIZER_CLASSES)}")
    return TOKENIZER_CLASSES[architecture].from_pretrained(folder, map_location=map_location)
