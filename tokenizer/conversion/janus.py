"""transformers' JanusVQVAE (a saved JanusVQVAE, or the tokenizer inside a saved Janus model) -> a Tessera VQGAN.

A JanusVQVAE folder holds config.json and model.safetensors under taming's names with the decoder listed from
the lowest resolution (JANUS below). Inside a JanusForConditionalGeneration folder the same weights sit under
"model.vqmodel." among the language model's (possibly in shards: only the shards holding them are read).

The quantiser: DeepSeek's Janus trained this VQ with LlamaGen's code, which l2-normalises the latent and the
codebook before the lookup and decodes the normalised entry; the converted model does the same. transformers'
JanusVQVAE.encode looks codes up without normalising (its decode normalises), so its indices differ from these
(and from the original model's) wherever the codebook rows are not of unit length.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from .layout import ForeignTokenizer, ForeignWeights, KeyLayout

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
FULL_MODEL_PREFIX = "model.vqmodel."

# taming's names, with the decoder's levels listed from the lowest resolution (as LlamaGen's)
JANUS = KeyLayout(down="down", up="up", res="block", middle=("mid.block_1", "mid.attn_1", "mid.block_2"),
                  decoder_from_lowest=True)


def janus_prefix(config: dict) -> str:
    """"" for a standalone JanusVQVAE, "model.vqmodel." for a whole Janus model (its config has vq_config)."""
    return FULL_MODEL_PREFIX if "vq_config" in config else ""


def janus_shards(folder: Path, prefix: str) -> list[str]:
    """The weight files of `folder` that hold the tokenizer's weights."""
    if (folder / INDEX).is_file():
        weight_map = json.loads((folder / INDEX).read_text())["weight_map"]
        shards = sorted({shard for key, shard in weight_map.items() if key.startswith(prefix)})
        if not shards:
            raise ValueError(f"{folder / INDEX} lists no {prefix}* weights: not a Janus model with a VQ tokenizer")
        return shards
    return [WEIGHTS]


def read_janus(folder: Path) -> ForeignTokenizer:
    """A JanusVQVAE or Janus model folder (config.json + model.safetensors or its shards)."""
    config = json.loads((folder / CONFIG).read_text())
    prefix = janus_prefix(config)
    vq = config.get("vq_config", config)
    if prefix and "vision_config" in config:  # transformers sets the grid from the understanding encoder's
        vision = config["vision_config"]
        num_patches = vision.get("image_size", 384) // vision.get("patch_size", 16)
    else:
        num_patches = vq.get("num_patches", 32)
    state = {}
    for shard in janus_shards(folder, prefix):
        path = folder / shard
        if not path.is_file():
            raise ValueError(f"{path} is missing: expected the weights of {folder / CONFIG}")
        with safe_open(str(path), framework="pt") as file:
            for key in file.keys():
                if key.startswith(prefix):
                    state[key[len(prefix):]] = file.get_tensor(key)
    weights = ForeignWeights(state, str(folder))
    factor = 2 ** (len(vq.get("channel_multiplier", (1, 1, 2, 2, 4))) - 1)
    tessera = JANUS.infer_config(weights, resolution=num_patches * factor, l2_normalize=True)
    return ForeignTokenizer(tessera, weights, JANUS)
