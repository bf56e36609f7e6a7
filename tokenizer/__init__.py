"""Stage one of Tessera: image tokenizers (images <-> code indices): the VQ-GAN and the two-level VQ-VAE-2; and
the plain VAE they grow from (images <-> Gaussian latents)."""

from .autoencoder import AutoencoderConfig
from .loading import build_tokenizer, load_tokenizer
from .quantizer import QuantizerConfig, VectorQuantizer
from .vqgan import VQGAN, VQGANConfig
from .vae import VAE, VAEConfig
from .vqvae2 import VQVAE2, VQVAE2Config

__all__ = ["AutoencoderConfig", "VAE", "VAEConfig", "VQGAN", "VQGANConfig", "VQVAE2", "VQVAE2Config", "QuantizerConfig",
           "VectorQuantizer", "build_tokenizer", "load_tokenizer"]
