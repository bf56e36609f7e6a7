"""What every converter shares: the blocks of a Tessera VQ-GAN in order, and a state dict built from a foreign
one in which every foreign key must be used (or dropped by name) and every Tessera weight filled.

The published tokenizers (taming-transformers' VQGAN, diffusers' VQModel, LlamaGen's VQ, transformers'
JanusVQVAE) share one layout: per level residual blocks (the decoder one more), self-attention after each on some
levels, a resampling conv between levels, a middle of block, attention, block. They differ in names only. A
converter names, for each `Block` of the Tessera model, the foreign module prefix that holds it; the copying,
the renaming of parameters inside a block, and the strict checks are done once, here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from ..models.autoencoder import AutoencoderConfig, Downsample, ResidualBlock, SelfAttention, Upsample
from ..models.vqgan import VQGAN, VQGANConfig

# Parameter names inside a block: Tessera's name -> the names foreign layouts use (first match wins).
RESIDUAL_NAMES = {"norm1": ("norm1",), "conv1": ("conv1",), "norm2": ("norm2",), "conv2": ("conv2",),
                  "skip": ("nin_shortcut", "conv_shortcut")}
# (diffusers files older than its Attention class name them query/key/value/proj_attn)
ATTENTION_NAMES = {"norm": ("norm", "group_norm"), "proj": ("proj_out", "to_out.0", "proj_attn")}
QKV_NAMES = (("q", "k", "v"), ("to_q", "to_k", "to_v"), ("query", "key", "value"))


@dataclass(frozen=True)
class Block:
    """One block of the Tessera autoencoder. `part`: "encoder" or "decoder"; `kind`: "res", "attn" or "resample"
    inside a level, "mid_res" or "mid_attn" in the middle; `level`: 0 = full resolution (the middle: the lowest
    level); `index`: the residual block's index within its level (an attention block shares its block's), or
    within the middle (0 or 1); `name`: the Tessera module's name, e.g. "encoder.down.3"."""

    part: str
    kind: str
    level: int
    index: int
    name: str


def autoencoder_blocks(model: VQGAN) -> list[Block]:
    """Every block of `model`'s encoder and decoder, read off the built modules (so this never disagrees with
    autoencoder.Encoder and Decoder): levels counted by the resampling convs between them."""
    num_levels = len(model.config.autoencoder.channel_mult)
    blocks = []
    for part, sequence, level, step in (("encoder", model.encoder.down, 0, 1),
                                       ("decoder", model.decoder.up, num_levels - 1, -1)):
        index = -1
        for position, module in enumerate(sequence):
            name = f"{part}.{'down' if part == 'encoder' else 'up'}.{position}"
            if isinstance(module, ResidualBlock):
                index += 1
                blocks.append(Block(part, "res", level, index, name))
            elif isinstance(module, SelfAttention):
                blocks.append(Block(part, "attn", level, index, name))
            elif isinstance(module, (Downsample, Upsample)):
                blocks.append(Block(part, "resample", level, 0, name))
                level, index = level + step, -1
        middle = model.encoder.middle if part == "encoder" else model.decoder.middle
        residuals = 0
        for position, module in enumerate(middle):
            kind = "mid_res" if isinstance(module, ResidualBlock) else "mid_attn"
            blocks.append(Block(part, kind, num_levels - 1, residuals if kind == "mid_res" else 0,
                                f"{part}.middle.{position}"))
            residuals += kind == "mid_res"
    return blocks


class ForeignWeights:
    """A foreign state dict being consumed: `take` hands out tensors and remembers which keys were used, so
    `check_all_used` can name every key no block asked for."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor], source: str, ignore: Iterable[str] = ()):
        # ignore: regular expressions of keys the conversion drops on purpose (losses, discriminators, heads).
        self.tensors = dict(state_dict)
        self.source = source
        self.ignored = sorted(k for k in self.tensors if any(re.match(pattern, k) for pattern in ignore))
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.tensors

    def take(self, key: str) -> torch.Tensor:
        if key not in self.tensors:
            nearby = sorted(k for k in self.tensors if k.startswith(key.rsplit(".", 1)[0]))[:8]
            raise ValueError(f"{self.source}: weight {key!r} is missing (expected by the converted layout); keys "
                             f"under that module: {nearby or 'none'}")
        self.used.add(key)
        return self.tensors[key]

    def take_first(self, prefix: str, names: tuple[str, ...], suffix: str) -> torch.Tensor | None:
        """The tensor of the first of `names` present under `prefix` (None when none is)."""
        for name in names:
            key = f"{prefix}.{name}.{suffix}"
            if key in self.tensors:
                return self.take(key)
        return None

    def check_all_used(self) -> None:
        left = sorted(set(self.tensors) - self.used - set(self.ignored))
        if left:
            raise ValueError(f"{self.source}: {len(left)} weights have no place in the converted tokenizer (the "
                             f"checkpoint's layout differs from the config read for it): {left[:12]}"
                             f"{' ...' if len(left) > 12 else ''}")


def _as_conv(weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv's weight (C_out, C_in, 1, 1) from itself or from a Linear's (C_out, C_in)."""
    return weight[:, :, None, None] if weight.dim() == 2 else weight


def _block_tensors(block: Block, prefix: str, foreign: ForeignWeights, ours: Mapping[str, torch.Tensor]) -> dict:
    """The Tessera parameters of one block, from the foreign module at `prefix`."""
    out = {}
    if block.kind in ("res", "mid_res"):
        for name, foreign_names in RESIDUAL_NAMES.items():
            for suffix in ("weight", "bias"):
                if f"{block.name}.{name}.{suffix}" not in ours:
                    continue
                tensor = foreign.take_first(prefix, foreign_names, suffix)
                if tensor is None:
                    raise ValueError(f"{foreign.source}: no {'/'.join(foreign_names)}.{suffix} under {prefix!r}")
                out[f"{block.name}.{name}.{suffix}"] = tensor
    elif block.kind in ("attn", "mid_attn"):
        for name, foreign_names in ATTENTION_NAMES.items():
            for suffix in ("weight", "bias"):
                tensor = foreign.take_first(prefix, foreign_names, suffix)
                if tensor is None:
                    raise ValueError(f"{foreign.source}: no {'/'.join(foreign_names)}.{suffix} under {prefix!r}")
                out[f"{block.name}.{name}.{suffix}"] = _as_conv(tensor) if name == "proj" and suffix == "weight" else tensor
        names = next((n for n in QKV_NAMES if foreign.has(f"{prefix}.{n[0]}.weight")), None)
        if names is None:
            raise ValueError(f"{foreign.source}: no query/key/value weights under {prefix!r}")
        for suffix in ("weight", "bias"):
            parts = [foreign.take(f"{prefix}.{n}.{suffix}") for n in names]
            out[f"{block.name}.qkv.{suffix}"] = torch.cat([_as_conv(p) if suffix == "weight" else p for p in parts])
    else:  # resample
        for suffix in ("weight", "bias"):
            out[f"{block.name}.conv.{suffix}"] = foreign.take(f"{prefix}.conv.{suffix}")
    return out


def convert_state_dict(
    model: VQGAN,
    foreign: ForeignWeights,
    block_prefix: Callable[[Block], str],
    direct: Mapping[str, str],
) -> None:
    """Fill `model` from `foreign`: each block from the module `block_prefix(block)` names, and each entry of
    `direct` (a Tessera parameter name -> the foreign key) as it is. Then strict checks both ways: a foreign key
    left over, a Tessera weight not filled, or a shape that differs is a ValueError naming it."""
    ours = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for block in autoencoder_blocks(model):
        converted.update(_block_tensors(block, block_prefix(block), foreign, ours))
    for name, key in direct.items():
        converted[name] = foreign.take(key)
    foreign.check_all_used()
    # The quantiser's statistics (usage EMA, k-means flag) start fresh: they are Tessera's own.
    for name in ours:
        if name.startswith("quantizer.") and name != "quantizer.codebook":
            converted[name] = ours[name]
    missing = sorted(set(ours) - set(converted))
    if missing:
        raise ValueError(f"{foreign.source}: no weights found for {missing[:12]}")
    for name, tensor in converted.items():
        if tuple(tensor.shape) != tuple(ours[name].shape):
            raise ValueError(f"{foreign.source}: {name} has shape {tuple(tensor.shape)} in the checkpoint; the "
                             f"config read for it builds {tuple(ours[name].shape)}")
    model.load_state_dict({k: v.to(ours[k].dtype) for k, v in converted.items()}, strict=True)


def imported_quantizer(codebook_size: int, code_dim: int, l2_normalize: bool) -> dict:
    """The quantiser settings of a published tokenizer: a codebook learned by gradient (none of these used EMA)
    and plain nearest-code lookup, so fine-tuning continues as they trained; no k-means init or dead-code
    restart (the codebook is already trained)."""
    return dict(codebook_size=codebook_size, code_dim=code_dim, l2_normalize=l2_normalize, use_ema=False,
                kmeans_init=False, dead_code_threshold=0.0)


@dataclass(frozen=True)
class KeyLayout:
    """One source's names for the blocks of the shared layout, under `encoder.` and `decoder.`:

        taming       down.{level}.block.{i} / .attn.{i} / .downsample   up.{level}...  (level 0 = full resolution)
        Janus (HF)   down.{level}.block.{i} ...                          up.{L-1-level}...
        LlamaGen     conv_blocks.{level}.res.{i} ...                     conv_blocks.{L-1-level}...
        diffusers    down_blocks.{level}.resnets.{i} / .attentions.{i} / .downsamplers.0   up_blocks.{L-1-level}...
    """

    down: str  # the encoder's level list
    up: str  # the decoder's level list
    res: str  # a level's residual blocks
    middle: tuple[str, str, str]  # residual, attention, residual
    decoder_from_lowest: bool  # the decoder's list starts at the lowest resolution (else at full resolution)
    attn: str = "attn"  # a level's attention blocks
    downsample: str = "downsample"
    upsample: str = "upsample"

    def block_prefix(self, block: Block, num_levels: int) -> str:
        if block.kind == "mid_res":
            return f"{block.part}.{self.middle[2 * block.index]}"
        if block.kind == "mid_attn":
            return f"{block.part}.{self.middle[1]}"
        if block.part == "encoder":
            level = f"encoder.{self.down}.{block.level}"
            sampler = self.downsample
        else:
            position = num_levels - 1 - block.level if self.decoder_from_lowest else block.level
            level = f"decoder.{self.up}.{position}"
            sampler = self.upsample
        return {"res": f"{level}.{self.res}.{block.index}", "attn": f"{level}.{self.attn}.{block.index}",
                "resample": f"{level}.{sampler}"}[block.kind]

    def infer_config(self, weights: ForeignWeights, *, resolution: int, l2_normalize: bool) -> VQGANConfig:
        """The Tessera config these weights fit, read off their shapes (no config file needed)."""
        tensors = weights.tensors

        def shape(key: str) -> tuple[int, ...]:
            if key not in tensors:
                raise ValueError(f"{weights.source}: no {key!r}: not a checkpoint in the {self.down}/{self.res} layout "
                                 f"this source expects (first keys: {sorted(tensors)[:6]})")
            return tuple(tensors[key].shape)

        def count(prefix: str) -> int:
            n = 0
            while any(k.startswith(f"{prefix}.{n}.") for k in tensors):
                n += 1
            return n

        channels = shape("encoder.conv_in.weight")[0]
        num_levels = count(f"encoder.{self.down}")
        widths = [shape(f"encoder.{self.down}.{level}.{self.res}.0.conv1.weight")[0] for level in range(num_levels)]
        if any(width % channels for width in widths):
            raise ValueError(f"{weights.source}: level widths {widths} are not multiples of the base width {channels}")
        code_count, code_dim = shape("quantize.embedding.weight")
        autoencoder = AutoencoderConfig(
            resolution=resolution, in_channels=shape("encoder.conv_in.weight")[1], channels=channels,
            downsample_factor=2 ** (num_levels - 1), channel_mult=tuple(w // channels for w in widths),
            num_res_blocks=count(f"encoder.{self.down}.0.{self.res}"), z_channels=shape("encoder.conv_out.weight")[0],
            use_attention=any(k.startswith(f"encoder.{self.middle[1]}.") for k in tensors),
            attention_levels=tuple(level for level in range(num_levels)
                                   if any(k.startswith(f"encoder.{self.down}.{level}.{self.attn}.0.") for k in tensors)),
        )
        return VQGANConfig(autoencoder, imported_quantizer(code_count, code_dim, l2_normalize))


def endpoint_keys(norm_out: str = "norm_out", codebook: str = "quantize.embedding.weight") -> dict[str, str]:
    """Tessera names -> foreign keys of the layers outside the blocks, under the names taming-transformers gave
    them (which LlamaGen and transformers' Janus kept): conv_in, norm_out, conv_out of both halves, the 1x1
    projections around the quantiser, and the codebook."""
    keys = {f"{part}.{ours}.{p}": f"{part}.{theirs}.{p}"
            for part in ("encoder", "decoder")
            for ours, theirs in (("conv_in", "conv_in"), ("norm_out", norm_out), ("conv_out", "conv_out"))
            for p in ("weight", "bias")}
    keys |= {f"{conv}.{p}": f"{conv}.{p}" for conv in ("quant_conv", "post_quant_conv") for p in ("weight", "bias")}
    return keys | {"quantizer.codebook": codebook}


@dataclass
class ForeignTokenizer:
    """A published tokenizer read into memory: the Tessera config that holds it, its weights, the names its blocks
    go by (`layout`) and those of the layers outside them (`direct`: a Tessera parameter -> the foreign key)."""

    config: VQGANConfig
    weights: ForeignWeights
    layout: KeyLayout
    direct: Mapping[str, str] = field(default_factory=endpoint_keys)

    def to_tessera(self) -> VQGAN:
        """The Tessera VQGAN with these weights, in eval mode."""
        model = VQGAN(self.config)
        num_levels = len(self.config.autoencoder.channel_mult)
        convert_state_dict(model, self.weights, lambda block: self.layout.block_prefix(block, num_levels), self.direct)
        return model.eval()
