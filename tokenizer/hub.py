"""Saved folders on disk or on the Hugging Face Hub, and strict weight loading with errors that name the file.

Thin glue over huggingface_hub (snapshot_download, create_repo, upload_folder), safetensors (load_file) and
torch (load_state_dict(strict=True)). The `prior` package keeps a twin of resolve_folder, load_weights_strict
and push_pretrained in prior/files.py, because tokenizer and prior never import each other; the pipeline
uses these.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from huggingface_hub import CommitInfo, HfApi, snapshot_download
from huggingface_hub.utils import (
    HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, validate_repo_id,
)
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn


def resolve_folder(
    name_or_path: str | Path,
    files: Sequence[str],
    what: str,
    *,
    also_download: Sequence[str] = (),
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """`name_or_path` itself when it is a folder, else the snapshot of that Hub repo with only `files` and
    `also_download` fetched into the Hugging Face cache (nothing else, so never a pickle file).
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
                token=token, allow_patterns=[*files, *also_download],
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


def load_state_dict_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """torch's load_state_dict(strict=True), whose error lists every missing, unexpected and misshapen key,
    as a one-line ValueError naming `source`."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights in {source} do not match the config: {' '.join(str(err).split())}") from None


def load_weights_strict(module: nn.Module, path: str | Path, device: str | torch.device = "cpu") -> None:
    """Load a safetensors file into `module` strictly; ValueError naming the file when it is unreadable or
    does not match. (Not safetensors' load_model: on a shape mismatch it reports no missing keys.)"""
    try:
        state_dict = load_file(str(path), device=str(device))
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    load_state_dict_strict(module, state_dict, path)


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
