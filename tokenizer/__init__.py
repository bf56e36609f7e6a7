"""Stage one of Tessera: the VQ-GAN image tokenizer (images <-> code indices)."""

from .quantizer import QuantizerConfig, VectorQuantizer
from .vqgan import VQGAN, VQGANConfig

__all__ = ["VQGAN", "VQGANConfig", "QuantizerConfig", "VectorQuantizer"]
