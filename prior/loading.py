"""Every prior family by name, loading a saved prior of any family, and starting a new run from one
(`train_prior.py --init_from DIR`: an earlier run, or a prior from tessera convert) on codes with other classes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from tessera_hub import CONFIG_NAME, WEIGHTS_NAME, read_json_object, resolve_folder

from .gpt import GPTPrior
from .pixelcnn import PixelCNNPrior

PRIOR_CLASSES = {"gpt": GPTPrior, "pixelcnn": PixelCNNPrior}


def load_prior(name_or_path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """A prior folder (or Hub id) of any type, its class named by the prior_type in its config.json."""
    folder = resolve_folder(name_or_path, (CONFIG_NAME, WEIGHTS_NAME), "a prior folder")
    kind = read_json_object(folder / CONFIG_NAME).get("prior_type")
    if kind not in PRIOR_CLASSES:
        raise ValueError(f"{folder / CONFIG_NAME} names prior type {kind!r}; expected one of {sorted(PRIOR_CLASSES)}")
    return PRIOR_CLASSES[kind].from_pretrained(folder, map_location=map_location)


def resized_class_rows(table: torch.Tensor, start: int, old_classes: int, new_classes: int) -> torch.Tensor:
    """A table whose rows [start, start + C) are the classes and row start + C the null class → the same with
    C' classes: the rows before and after kept, the null row kept, and every class row a copy of the null row
    when the classes change (a new class starts as 'no class'; guidance then starts at no effect)."""
    null = table[start + old_classes]
    classes = table[start : start + old_classes] if new_classes == old_classes else null.expand(new_classes, -1)
    return torch.cat([table[:start], classes, table[start + old_classes :]])


def prior_for_codes(loaded: nn.Module, codebook_size: int, grid_shape: tuple[int, int], context: tuple[int, tuple],
                    num_classes: int, class_names: tuple[str, ...], tokenizer_fingerprint: str | None,
                    **overrides) -> nn.Module:
    """`loaded` made ready to train on other codes of its tokenizer: the same codebook, grid and context (else a
    ValueError naming both), the classes those codes have (class rows resized, see `resized_class_rows`; kept
    as they are when the classes and their names are the same), and the codes' tokenizer recorded; `overrides`:
    other config fields of the new run (a GPT's dropout)."""
    c = loaded.config
    have = (c.codebook_size, tuple(c.grid_shape), (c.context_codebook_size, tuple(c.context_grid_shape)))
    want = (codebook_size, tuple(grid_shape), (context[0], tuple(context[1])))
    if have != want:
        raise ValueError(f"the prior to start from models {have[1]} grids of {have[0]} codes (context {have[2]}); "
                         f"these codes are {want[1]} grids of {want[0]} codes (context {want[2]}): a prior starts "
                         f"only a run on codes of its own tokenizer")
    same_classes = num_classes == c.num_classes and (not c.class_names or tuple(class_names) == tuple(c.class_names))
    config = dataclasses.replace(c, num_classes=num_classes, class_names=tuple(class_names),
                                 tokenizer_fingerprint=tokenizer_fingerprint or c.tokenizer_fingerprint, **overrides)
    model = type(loaded)(config)
    state = loaded.state_dict()
    if not same_classes:
        state = {name: _resize(loaded, name, tensor, num_classes) for name, tensor in state.items()}
    model.load_state_dict(state, strict=True)
    return model


def _resize(loaded: nn.Module, name: str, tensor: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One weight of `loaded` for `num_classes` classes: the tables that hold a row per class change."""
    c = loaded.config
    if isinstance(loaded, GPTPrior) and name in ("transformer.model.embed_tokens.weight", "transformer.lm_head.weight"):
        return resized_class_rows(tensor, c.codebook_size, c.num_classes, num_classes)  # [codes, classes, null, top]
    if isinstance(loaded, PixelCNNPrior) and name.endswith(".condition.weight"):
        return resized_class_rows(tensor, 0, c.num_classes, num_classes)  # [classes, null]
    return tensor
