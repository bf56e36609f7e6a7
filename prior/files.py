"""Saving and loading priors (a folder, on disk or on the Hugging Face Hub, with config.json naming the prior type
and model.safetensors), and the checks every prior config shares.

resolve_folder, load_weights_strict and push_pretrained twin those of tokenizer/hub.py (prior and tokenizer never
import each other): thin glue over huggingface_hub, safetensors and torch's strict load_state_dict.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import CommitInfo, HfApi, snapshot_download
from huggingface_hub.utils import (
    HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, validate_repo_id,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class PriorFiles:
    """save_pretrained / from_pretrained / push_to_hub shared by the priors. A subclass sets `prior_type` (written
    into config.json and checked on load) and `config_class`; its instances have `config` with `to_dict()`."""

    prior_type: str
    config_class: type

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json (config and prior_type) and model.safetensors into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"prior_type": self.prior_type, **self.config.to_dict()}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        save_model(self, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "model": f"tessera.{self.prior_type}"})

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
        model.safetensors are fetched, into the Hugging Face cache). The folder must hold this prior type, and
        every weight must be present and match."""
        folder = resolve_folder(name_or_path, (CONFIG_NAME, WEIGHTS_NAME), "a prior folder", revision=revision,
                                cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        config = json.loads((folder / CONFIG_NAME).read_text())
        found = config.pop("prior_type", None)
        if found != cls.prior_type:
            raise ValueError(f"{folder} holds a {found!r} prior; expected {cls.prior_type!r}")
        model = cls(cls.config_class(**config))
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
        return push_pretrained(self, repo_id, revision=revision, private=private, token=token,
                               commit_message=commit_message)


def resolve_folder(
    name_or_path: str | Path,
    files: Sequence[str],
    what: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """`name_or_path` itself when it is a folder, else the snapshot of that Hub repo with only `files` fetched
    into the Hugging Face cache (nothing else, so never a pickle file).
    ValueError when it is neither, when the repo can't be had, or when any of `files` is missing."""
    folder = Path(name_or_path)
    if folder.is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} is for Hub repo ids, but {folder} is a local folder")
    else:
        try:
            validate_repo_id(str(name_or_path))
            folder = Path(snapshot_download(
                str(name_or_path), revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                token=token, allow_patterns=list(files),
            ))
        except HFValidationError as err:
            raise ValueError(f"{name_or_path}: expected a local folder or a Hub repo id; it is neither ({err})") from None
        except (LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as err:
            raise ValueError(f"{name_or_path!r} is not a local folder, and the Hub repo {name_or_path!r} at revision "
                             f"{revision or 'main'!r} could not be had: {err}") from err
    for name in files:
        if not (folder / name).is_file():
            raise ValueError(f"{folder / name} is missing: expected {what} with {', '.join(files)}")
    return folder


def load_weights_strict(module: nn.Module, path: str | Path, device: str | torch.device = "cpu") -> None:
    """Load a safetensors file into `module` with torch's load_state_dict(strict=True) (its error lists every
    missing, unexpected and misshapen key; safetensors' load_model reports no missing keys on a shape
    mismatch); one-line ValueError naming the file when it is unreadable or does not match."""
    try:
        state_dict = load_file(str(path), device=str(device))
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights in {path} do not match the config: {' '.join(str(err).split())}") from None


def push_pretrained(
    model,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Upload exactly what `model.save_pretrained` writes as one commit (to branch `revision`, created if
    missing); the repo is created if missing. Returns the commit info (a str: the commit url)."""
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                 commit_message=commit_message or f"Upload {type(model).__name__}")


def normalize_data_fields(config: Any) -> None:
    """Check and normalise what every prior config shares: codebook_size, grid_shape, num_classes, class_names,
    and the context of a bottom-level prior (context_codebook_size and context_grid_shape: the top grid it is
    conditioned on; 0 and () for a prior without one)."""
    config.grid_shape = tuple(int(s) for s in config.grid_shape)
    config.context_grid_shape = tuple(int(s) for s in config.context_grid_shape)
    config.class_names = tuple(config.class_names)
    if bool(config.context_codebook_size) != bool(config.context_grid_shape):
        raise ValueError(f"context_codebook_size={config.context_codebook_size} with context_grid_shape="
                         f"{config.context_grid_shape}: expected both set (a bottom-level prior) or neither")
    if config.context_grid_shape and (len(config.context_grid_shape) != 2 or min(config.context_grid_shape) < 1
                                      or config.context_codebook_size < 2):
        raise ValueError(f"context grid {config.context_grid_shape} of {config.context_codebook_size} codes: "
                         f"expected (h, w) with positive sides and at least 2 codes")
    if config.codebook_size < 2:
        raise ValueError(f"codebook_size={config.codebook_size}: expected at least 2")
    if len(config.grid_shape) != 2 or min(config.grid_shape) < 1:
        raise ValueError(f"grid_shape={config.grid_shape}: expected (h, w) with positive sides")
    if config.num_classes < 0:
        raise ValueError(f"num_classes={config.num_classes}: expected >= 0")
    if config.class_names and len(config.class_names) != config.num_classes:
        raise ValueError(f"{len(config.class_names)} class names for num_classes={config.num_classes}")
