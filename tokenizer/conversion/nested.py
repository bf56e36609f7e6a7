"""The key layout taming-transformers wrote and LlamaGen and transformers' JanusVQVAE renamed: levels of nested
blocks, and a config read off the weights' shapes.

    taming       encoder.down.{level}.block.{i} / .attn.{i} / .downsample   decoder.up.{level}...    (level 0 = full)
    Janus (HF)   encoder.down.{level}.block.{i} ...                          decoder.up.{L-1-level}...
    LlamaGen     encoder.conv_blocks.{level}.res.{i} ...                     decoder.conv_blocks.{L-1-level}...
    middle       mid.block_1 / mid.attn_1 / mid.block_2 (LlamaGen: mid.0 / mid.1 / mid.2)

Inference from shapes needs no config file: the base width is conv_in's, a level's width its first residual
block's, the block count what is present, attention where attention weights are.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..vqgan import VQGANConfig
from .layout import Block, ForeignWeights, imported_quantizer


@dataclass(frozen=True)
class NestedNames:
    """One source's names in the nested layout."""

    down: str  # the encoder's level list
    up: str  # the decoder's level list
    res: str  # a level's residual blocks
    middle: tuple[str, str, str]  # residual, attention, residual
    decoder_from_lowest: bool  # the decoder's list starts at the lowest resolution (else at full resolution)

    def block_prefix(self, block: Block, num_levels: int) -> str:
        if block.kind == "mid_res":
            return f"{block.part}.mid.{self.middle[2 * block.index]}"
        if block.kind == "mid_attn":
            return f"{block.part}.mid.{self.middle[1]}"
        if block.part == "encoder":
            level = f"encoder.{self.down}.{block.level}"
            sampler = "downsample"
        else:
            position = num_levels - 1 - block.level if self.decoder_from_lowest else block.level
            level = f"decoder.{self.up}.{position}"
            sampler = "upsample"
        return {"res": f"{level}.{self.res}.{block.index}", "attn": f"{level}.attn.{block.index}",
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
        return VQGANConfig(
            resolution=resolution, in_channels=shape("encoder.conv_in.weight")[1], channels=channels,
            downsample_factor=2 ** (num_levels - 1), channel_mult=tuple(w // channels for w in widths),
            num_res_blocks=count(f"encoder.{self.down}.0.{self.res}"), z_channels=shape("encoder.conv_out.weight")[0],
            use_attention=f"encoder.mid.{self.middle[1]}.q.weight" in tensors,
            attention_levels=tuple(level for level in range(num_levels)
                                   if f"encoder.{self.down}.{level}.attn.0.q.weight" in tensors),
            quantizer=imported_quantizer(code_count, code_dim, l2_normalize),
        )


TAMING = NestedNames(down="down", up="up", res="block", middle=("block_1", "attn_1", "block_2"),
                     decoder_from_lowest=False)
JANUS = NestedNames(down="down", up="up", res="block", middle=("block_1", "attn_1", "block_2"),
                    decoder_from_lowest=True)
LLAMAGEN = NestedNames(down="conv_blocks", up="conv_blocks", res="res", middle=("0", "1", "2"),
                       decoder_from_lowest=True)
