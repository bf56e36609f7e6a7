"""diffusers `VQModel` (the taming VQGAN architecture under diffusers' names) -> a Tessera VQGAN.

A VQModel folder holds config.json and diffusion_pytorch_model.safetensors (repos such as amused/amused-256 keep
it in the subfolder "vqvae"). Names: encoder.down_blocks.{level}.resnets.{i} / .attentions.{i} /
.downsamplers.0, encoder.mid_block.resnets.{0,1} / .attentions.0, encoder.conv_norm_out; the decoder's
up_blocks run from the lowest resolution up (up_blocks.0 is level L-1); attention q/k/v/out are Linear layers
(to_q, to_k, to_v, to_out.0; single-head, as the VAE blocks build them); quantize.embedding.weight is the codebook.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..models.autoencoder import AutoencoderConfig
from ..models.vqgan import VQGANConfig
from tessera_hub.foreign_files import read_tensors
from .layout import ForeignTokenizer, ForeignWeights, KeyLayout, endpoint_keys, imported_quantizer

CONFIG = "config.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS = KeyLayout(down="down_blocks", up="up_blocks", res="resnets", attn="attentions",
                      downsample="downsamplers.0", upsample="upsamplers.0", decoder_from_lowest=True,
                      middle=("mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1"))
DOWN_ATTENTION = {"DownEncoderBlock2D": False, "AttnDownEncoderBlock2D": True}
UP_ATTENTION = {"UpDecoderBlock2D": False, "AttnUpDecoderBlock2D": True}


def _unsupported(folder: Path, field: str, value, expected: str) -> ValueError:
    return ValueError(f"{folder / CONFIG}: {field}={value!r}; a Tessera tokenizer holds {expected}")


def diffusers_config(config: dict, folder: Path) -> VQGANConfig:
    """The Tessera config that holds this VQModel config exactly; ValueError naming what it cannot hold."""
    if config.get("_class_name", "VQModel") != "VQModel":
        raise _unsupported(folder, "_class_name", config["_class_name"], "a VQModel only")
    if config.get("norm_type", "group") != "group":
        raise _unsupported(folder, "norm_type", config["norm_type"], "GroupNorm decoders only (not MoVQ's spatial norm)")
    if config.get("act_fn", "silu") not in ("silu", "swish"):  # diffusers' two names of x·sigmoid(x)
        raise _unsupported(folder, "act_fn", config["act_fn"], "SiLU activations only")
    if config.get("in_channels", 3) != config.get("out_channels", 3):
        raise _unsupported(folder, "out_channels", config.get("out_channels"), "as many output as input channels")
    widths = list(config.get("block_out_channels", (64,)))
    if any(width % widths[0] for width in widths):
        raise _unsupported(folder, "block_out_channels", widths, "widths that are multiples of the first")
    down = [DOWN_ATTENTION.get(t) for t in config.get("down_block_types", ("DownEncoderBlock2D",))]
    up = [UP_ATTENTION.get(t) for t in config.get("up_block_types", ("UpDecoderBlock2D",))]
    if None in down or None in up:
        raise _unsupported(folder, "down/up_block_types", (config.get("down_block_types"), config.get("up_block_types")),
                           f"blocks of {list(DOWN_ATTENTION)} and {list(UP_ATTENTION)}")
    if len(down) != len(widths) or up != down[::-1]:
        raise _unsupported(folder, "up_block_types", config.get("up_block_types"),
                           "a decoder that mirrors the encoder (attention on the same levels)")
    latent = config.get("latent_channels", 3)
    autoencoder = AutoencoderConfig(
        resolution=config.get("sample_size", 32), in_channels=config.get("in_channels", 3), channels=widths[0],
        downsample_factor=2 ** (len(widths) - 1), channel_mult=tuple(w // widths[0] for w in widths),
        num_res_blocks=config.get("layers_per_block", 1), z_channels=latent,
        use_attention=config.get("mid_block_add_attention", True),
        attention_levels=tuple(level for level, attention in enumerate(down) if attention),
        norm_groups=config.get("norm_num_groups", 32),
    )
    quantizer = imported_quantizer(config.get("num_vq_embeddings", 256), config.get("vq_embed_dim") or latent, False)
    return VQGANConfig(autoencoder, quantizer)


def read_diffusers(folder: Path, subfolder: str = "") -> ForeignTokenizer:
    """A VQModel folder (config.json + diffusion_pytorch_model.safetensors, in `subfolder` when given)."""
    folder = folder / subfolder if subfolder else folder
    config = diffusers_config(json.loads((folder / CONFIG).read_text()), folder)
    return ForeignTokenizer(
        config, ForeignWeights(read_tensors(folder / WEIGHTS), str(folder / WEIGHTS)),
        DIFFUSERS, endpoint_keys(norm_out="conv_norm_out"))
