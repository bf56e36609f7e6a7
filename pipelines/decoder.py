"""A tokenizer's decoder in the shape prior training wants for its sample grids."""

from __future__ import annotations

from pathlib import Path

import torch

from prior.training import GridDecoder
from tokenizer import load_tokenizer


def load_decoder(tokenizer_dir: str | Path, device: str | torch.device = "cpu") -> GridDecoder:
    """Load a saved tokenizer (any architecture) and wrap its `decode_levels` with its fingerprint, codebook
    sizes and grids."""
    model = load_tokenizer(tokenizer_dir).to(device).eval()
    model.require_codes("a prior's sample grids")

    @torch.no_grad()
    def decode(grids: list[torch.Tensor]) -> torch.Tensor:
        return model.decode_levels([grid.to(device) for grid in grids])

    return GridDecoder(decode, model.fingerprint(), list(model.config.codebook_sizes),
                   [tuple(g) for g in model.config.grid_shapes])
