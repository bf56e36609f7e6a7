"""Saving and loading priors (a folder with config.json naming the prior type, and model.safetensors), and the
checks every prior config shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_prior(model: nn.Module, config: dict[str, Any], prior_type: str, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(json.dumps({"prior_type": prior_type, **config}, indent=2) + "\n")
    save_model(model, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "model": f"tessera.{prior_type}"})


def read_prior_config(directory: str | Path, prior_type: str) -> dict[str, Any]:
    """The config dict of a saved prior, checking the folder is complete and holds this prior type."""
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise ValueError(f"{directory / name} is missing: expected a prior folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    config = json.loads((directory / CONFIG_NAME).read_text())
    found = config.pop("prior_type", None)
    if found != prior_type:
        raise ValueError(f"{directory} holds a {found!r} prior; expected {prior_type!r}")
    return config


def load_weights_strict(model: nn.Module, directory: str | Path, device: str = "cpu") -> None:
    path = Path(directory) / WEIGHTS_NAME
    try:
        load_model(model, str(path), strict=True, device=device)
    except RuntimeError as e:  # missing/unexpected keys or shape mismatches
        raise ValueError(f"weights in {path} do not match the config: {e}") from None


def normalize_data_fields(config: Any) -> None:
    """Check and normalise what every prior config shares: codebook_size, grid_shape, num_classes, class_names."""
    config.grid_shape = tuple(int(s) for s in config.grid_shape)
    config.class_names = tuple(config.class_names)
    if config.codebook_size < 2:
        raise ValueError(f"codebook_size={config.codebook_size}: expected at least 2")
    if len(config.grid_shape) != 2 or min(config.grid_shape) < 1:
        raise ValueError(f"grid_shape={config.grid_shape}: expected (h, w) with positive sides")
    if config.num_classes < 0:
        raise ValueError(f"num_classes={config.num_classes}: expected >= 0")
    if config.class_names and len(config.class_names) != config.num_classes:
        raise ValueError(f"{len(config.class_names)} class names for num_classes={config.num_classes}")
