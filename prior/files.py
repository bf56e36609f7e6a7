"""What every prior shares: its saved folder (tessera_hub.SavedModel: config.json naming the prior type +
model.safetensors, on disk or on the Hub) and the checks of the config fields every prior has."""

from __future__ import annotations

from typing import Any

from tessera_hub import SavedModel


class PriorFiles(SavedModel):
    """save_pretrained / from_pretrained / push_to_hub (huggingface_hub's mixin) for the priors. A subclass sets
    `prior_type` (written into config.json and checked on load) and `config_class`."""

    prior_type: str
    kind_key = "prior_type"
    noun = "prior"


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
