"""Stage one of Tessera: image tokenizers (images <-> code indices): the VQ-GAN, the two-level VQ-VAE-2, and the
plain VAE they grow from (images <-> Gaussian latents).

Rooms: models/ (the architectures and their configs, the codebook, saved folders), losses/ (the training objective,
perceptual networks, the patch discriminator), data/ (image sources, datasets, decoding), training/ (run config,
loop, presets) and conversion/ (published tokenizers read into a VQGAN).
"""

from .models.autoencoder import AutoencoderConfig
from .models.loading import TOKENIZER_CLASSES, Tokenizer, build_tokenizer, load_tokenizer
from .models.fsq import FiniteScalarQuantizer
from .models.lfq import LookupFreeQuantizer
from .models.quantizer import QuantizerConfig, VectorQuantizer
from .models.quantizers import build_quantizer
from .models.vae import VAE, VAEConfig
from .models.vqgan import VQGAN, VQGANConfig
from .models.vqvae2 import VQVAE2, VQVAE2Config

__all__ = ["AutoencoderConfig", "FiniteScalarQuantizer", "LookupFreeQuantizer", "QuantizerConfig", "TOKENIZER_CLASSES",
           "Tokenizer", "VAE", "VAEConfig", "VQGAN", "VQGANConfig", "VQVAE2", "VQVAE2Config", "VectorQuantizer",
           "build_quantizer", "build_tokenizer", "load_tokenizer"]
