"""Saving and loading priors: a folder with config.json (naming the prior type) and model.safetensors."""

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
