"""The quantiser a QuantizerConfig names: a learned codebook (vq), finite scalar quantisation (fsq) or
lookup-free quantisation (lfq). All three take latents (B, code_dim, h, w) and give QuantizerOutput, embed
indices back to code vectors, and count usage over recent training batches."""

from __future__ import annotations

from .fsq import FiniteScalarQuantizer
from .lfq import LookupFreeQuantizer
from .quantizer import CodeUsage, QuantizerConfig, VectorQuantizer

QUANTIZER_CLASSES: dict[str, type[CodeUsage]] = {
    cls.kind: cls for cls in (VectorQuantizer, FiniteScalarQuantizer, LookupFreeQuantizer)}


def build_quantizer(config: QuantizerConfig) -> CodeUsage:
    return QUANTIZER_CLASSES[config.kind](config)
