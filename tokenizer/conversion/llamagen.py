"""LlamaGen's VQ (VQ-16 / VQ-8 `.pt` files, e.g. vq_ds16_c2i.pt) -> a Tessera VQGAN.

The file is a dict whose "model" (or "ema", when trained with EMA weights) entry is the state dict in the
nested layout (nested.LLAMAGEN). LlamaGen always l2-normalises the latent and the codebook before the lookup
and decodes the normalised entry, so the converted quantiser has l2_normalize on. Its usage ring buffer
(quantize.codebook_used) is dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tessera_hub.foreign_files import read_torch_checkpoint
from .layout import ForeignTokenizer, ForeignWeights, KeyLayout

DEFAULT_RESOLUTION = 256  # LlamaGen's ImageNet tokenizers train at 256 px
IGNORED = (r"quantize\.codebook_used$",)

LLAMAGEN = KeyLayout(down="conv_blocks", up="conv_blocks", res="res", middle=("mid.0", "mid.1", "mid.2"),
                     decoder_from_lowest=True)


def read_llamagen(checkpoint: Path, weights: str = "model") -> ForeignTokenizer:
    """The `weights` entry ("model" or "ema") of a LlamaGen VQ checkpoint; a bare state dict is taken whole."""
    loaded = read_torch_checkpoint(checkpoint)
    if all(isinstance(v, torch.Tensor) for v in loaded.values()):
        state = loaded
    elif weights in loaded:
        state = loaded[weights]
    else:
        raise ValueError(f"{checkpoint} has no {weights!r} entry; it holds {sorted(loaded)}")
    foreign = ForeignWeights(state, f"{checkpoint}[{weights!r}]", ignore=IGNORED)
    config = LLAMAGEN.infer_config(foreign, resolution=DEFAULT_RESOLUTION, l2_normalize=True)
    return ForeignTokenizer(config, foreign, LLAMAGEN)
