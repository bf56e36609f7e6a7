"""Reading foreign weight files without executing pickled code.

safetensors files are read as they are. PyTorch files (.pt, .ckpt, .bin) are read with
torch.load(weights_only=True), which unpickles tensors and plain containers only; a file that needs more (a
Lightning callback object, an argparse.Namespace of training arguments) is refused with the way to re-save its
weights safely, by someone who trusts it.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .folders import resolve_folder


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a safetensors file, or from a PyTorch file holding exactly such a dict."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing: expected a weights file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    loaded = read_torch_checkpoint(path)
    if not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path} holds {sorted(loaded)[:6]}..., not a flat dict of tensors")
    return loaded


def read_torch_checkpoint(path: str | Path, stand_ins: Mapping[str, type] = MappingProxyType({})) -> dict:
    """torch.load(path, weights_only=True) on the CPU, as a dict; a clear ValueError when the file holds Python
    objects beyond tensors and containers (nothing in it is executed). `stand_ins`: classes the file names only
    as references (e.g. a dict keyed by a class), by their full names -> an inert local class read in their place."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing: expected a PyTorch checkpoint")
    allowed = contextlib.nullcontext()
    if stand_ins:
        allowed = torch.serialization.safe_globals([(cls, name) for name, cls in stand_ins.items()])
    try:
        with allowed:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path} cannot be read with torch.load(weights_only=True): it holds Python objects beyond tensors "
            f"({first_line}). Tessera never unpickles those, since unpickling can run code. If you trust the file, "
            f"keep only its tensors with: python -c \"import torch; c = torch.load('{path}', map_location='cpu', "
            f"weights_only=False); torch.save({{k: c[k] for k in ('state_dict', 'model', 'ema') if k in c}}, "
            f"'weights.pt')\" and convert weights.pt"
        ) from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds a {type(loaded).__name__}; expected a dict (a state dict or a checkpoint)")
    return loaded


def foreign_checkpoint(name_or_path: str | Path, filename: str | None, config: str | Path | None = None,
                       **hub) -> tuple[Path, Path | None]:
    """A single-file checkpoint (and a config beside it, such as taming's YAML): local paths, or files of a Hub repo
    id (`filename`: the checkpoint's name in the repo); `hub`: resolve_folder's revision, cache_dir,
    local_files_only, token."""
    path = Path(name_or_path)
    if path.is_file():
        if filename is not None:
            raise ValueError(f"filename={filename!r} is for Hub repo ids, but {path} is a local file")
        return path, Path(config) if config is not None else None
    if path.is_dir():
        raise ValueError(f"{path} is a folder: expected the checkpoint file itself (or a Hub repo id with filename)")
    if filename is None:
        raise ValueError(f"{name_or_path} is not a local file; for a Hub repo id give filename (the checkpoint's "
                         f"name in the repo)")
    files = (filename, *([str(config)] if config is not None else []))
    folder = resolve_folder(name_or_path, files, "a checkpoint", **hub)
    return folder / filename, folder / config if config is not None else None
