"""A folder on disk or a Hub repo's snapshot with only the named files fetched, and strict weight loading with
errors that name the file. Thin glue over huggingface_hub (snapshot_download), safetensors (load_file) and torch
(load_state_dict(strict=True))."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.utils import (
    HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, validate_repo_id,
)
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace runs, newlines included, become one space), cut to `limit`
    characters: for quoting a library's error inside one `error: ...` line."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + " ..."


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
    for name in (*files, *also_download):  # a repo's own files only: never a path out of its folder
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"{name!r}: expected a file name inside {name_or_path} (no absolute path, no '..')")
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
