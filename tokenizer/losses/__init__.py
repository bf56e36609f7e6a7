"""What trains a tokenizer besides its data: the objective (vqgan_loss: reconstruction, perceptual, bottleneck and
adaptive GAN terms), the perceptual networks (perceptual) and the patch discriminator (discriminator)."""

from .discriminator import DiscriminatorConfig, PatchDiscriminator
from .vqgan_loss import LossConfig, VQGANLoss, adaptive_gan_weight

__all__ = ["DiscriminatorConfig", "LossConfig", "PatchDiscriminator", "VQGANLoss", "adaptive_gan_weight"]
