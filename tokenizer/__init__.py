"""Stage one of Tessera: image tokenizers (images <-> code indices): the VQ-GAN and the two-level VQ-VAE-2; and
the plain VAE they grow from (images <-> Gaussian latents)."""

from .loading import build_tokenizer, load_tokenizer
from .quantizer import QuantizerConfig, VectorQuantizer
from .vqgan import VQGAN, VQGANConfig
from .vae import VAE
from .vqvae2 import VQVAE2

__all__ = ["VAE", "VQGAN", "VQGANConfig", "VQVAE2", "QuantizerConfig", "VectorQuantizer", "build_tokenizer", "load_tokenizer"]
