"""A tokenizer's decoder in the shape prior training wants for its sample grids."""

from __future__ import annotations

from pathlib import Path

import torch

from prior.training import Decoder
from tokenizer import VQGAN


def load_decoder(tokenizer_dir: str | Path, device: str | torch.device = "cpu") -> Decoder:
    """Load a saved tokenizer and wrap its `decode` with its fingerprint, codebook size and grid."""
    model = VQGAN.from_pretrained(tokenizer_dir).to(device).eval()

    @torch.no_grad()
    def decode(codes: torch.Tensor) -> torch.Tensor:
        return model.decode(codes.to(device))

    return Decoder(decode, model.fingerprint(), model.config.codebook_size, tuple(model.config.grid_shapes[0]))
