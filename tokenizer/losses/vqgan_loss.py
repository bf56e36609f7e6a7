"""Tokenizer training losses: reconstruction (L1/L2), perceptual, the bottleneck's (quantiser or KL), and the
patch-GAN terms.

Kept apart from the model (LlamaGen's VQLoss beside VQModel). The generator loss and the discriminator
loss are separate methods because they are optimised by separate optimisers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..models.vae import VAEOutput
from ..models.vqgan import VQGANOutput
from ..models.vqvae2 import VQVAE2Output
from .perceptual import PERCEPTUAL_LOSSES, build_perceptual_loss

RECONSTRUCTION_LOSSES = ("l1", "l2")
GAN_LOSSES = ("hinge", "non-saturating")


@dataclass
class LossConfig:
    reconstruction_loss: str = field(default="l1", metadata={"help": f"one of {RECONSTRUCTION_LOSSES}"})
    reconstruction_weight: float = field(default=1.0, metadata={"help": "weight of the pixel (L1 or L2) loss"})
    # The shipped ST-LPIPS AlexNet at 0.1, the small-32px preset's (a test keeps them equal); a missing weight
    # file is an error, never a silent "no perceptual loss".
    perceptual_loss: str = field(default="stlpips-alex", metadata={
        "help": f"one of {PERCEPTUAL_LOSSES} (none = plain VQ-VAE reconstruction loss)"})
    perceptual_weight: float = field(default=0.1, metadata={"help": "weight of the perceptual loss; 0 = off"})
    # Multiplies the bottleneck's own loss: the quantiser's codebook + β·commitment terms, or a vae's β_KL·KL.
    quantizer_weight: float = field(default=1.0, metadata={
        "help": "weight of the bottleneck's loss: the quantisers' codebook + β·commitment terms, or a vae's β_KL·KL"})
    # The KL is taken per image dimension (nats / (3·H·W)), the scale of the mean reconstruction loss, so with the
    # L1 loss kl_weight is the scale b of the Laplace likelihood whose ELBO is trained (L2: 2σ² of a Gaussian).
    kl_weight: float = field(default=0.3, metadata={
        "help": "vae: β_KL on KL(q(z|x) || N(0, I)) per image dimension; with the L1 loss, the Laplace scale b"})
    gan_loss: str = field(default="hinge", metadata={"help": f"one of {GAN_LOSSES}"})
    # multiplies the adaptive weight λ
    gan_weight: float = field(default=0.5, metadata={
        "help": "weight of the adaptive GAN term; 0 disables the discriminator"})
    # Generator and discriminator GAN terms switch on here. None: TrainTokenizerConfig sets 60% of max_steps
    # (earlier cost PSNR and rFID: docs/benchmarks.md, "The recipe, measured").
    disc_start_step: int | None = field(default=None, metadata={
        "help": "step at which the GAN terms switch on; none = 60%% of max_steps"})
    # The generator's GAN term ramps up linearly over this many steps from disc_start_step while the
    # discriminator trains at full strength from the start. Without it the first steps push the generator with
    # an untrained discriminator's gradients at their largest λ (docs/benchmarks.md, "The recipe, measured").
    gan_ramp_steps: int = field(default=60, metadata={
        "help": "steps over which the generator's GAN term ramps up from 0 after disc_start_step; 0 = at once"})
    adaptive_weight_max: float = field(default=1e4, metadata={
        "help": "upper clamp on the adaptive GAN weight λ"})
    adaptive_weight_delta: float = field(default=1e-4, metadata={
        "help": "δ in the adaptive GAN weight λ = ‖∇L_rec‖ / (‖∇L_GAN‖ + δ)"})

    def __post_init__(self) -> None:
        choices = {
            "reconstruction_loss": RECONSTRUCTION_LOSSES,
            "gan_loss": GAN_LOSSES,
            "perceptual_loss": PERCEPTUAL_LOSSES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected one of {list(allowed)}")
        for name in ("reconstruction_weight", "perceptual_weight", "quantizer_weight", "kl_weight", "gan_weight",
                     "disc_start_step", "gan_ramp_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: expected a non-negative value")


def _scalar(value: torch.Tensor) -> float:
    """A loss value for the logs, without touching the graph."""
    return float(value.detach())


def adaptive_gan_weight(
    rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor, delta: float, max_weight: float
) -> torch.Tensor:
    """λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + δ) at the decoder's last layer G_L, clamped, no grad."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.float().norm() / (gan_grad.float().norm() + delta)
    return weight.clamp(0.0, max_weight).detach()


def generator_adversarial_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()  # non-saturating: -log σ(D(G(z)))


def discriminator_adversarial_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


class VQGANLoss(nn.Module):
    """Holds the (frozen) perceptual network and the loss settings."""

    def __init__(self, config: LossConfig):
        super().__init__()
        if config.disc_start_step is None:
            raise ValueError("disc_start_step=None: expected a step (TrainTokenizerConfig sets 60% of max_steps)")
        self.config = config
        self.perceptual = build_perceptual_loss(config.perceptual_loss)

    def gan_active(self, step: int) -> bool:
        return self.config.gan_weight > 0 and step >= self.config.disc_start_step

    def gan_ramp(self, step: int) -> float:
        """The generator's GAN factor at `step`: 1/R, 2/R, ... 1 over the R = gan_ramp_steps after the start."""
        if self.config.gan_ramp_steps == 0:
            return 1.0
        return min(1.0, (step - self.config.disc_start_step + 1) / self.config.gan_ramp_steps)

    def reconstruction(self, images: torch.Tensor, reconstruction: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Pixel plus perceptual loss (the 'L_rec' of the adaptive weight)."""
        pixel = (F.l1_loss if self.config.reconstruction_loss == "l1" else F.mse_loss)(reconstruction, images)
        loss = self.config.reconstruction_weight * pixel
        logs = {"pixel_loss": _scalar(pixel)}
        if self.perceptual is not None and self.config.perceptual_weight > 0:
            perceptual = self.perceptual(reconstruction.float(), images.float()).mean()
            loss = loss + self.config.perceptual_weight * perceptual
            logs["perceptual_loss"] = _scalar(perceptual)
        return loss, logs

    def latent_loss(self, output: VQGANOutput | VQVAE2Output | VAEOutput) -> torch.Tensor:
        """The bottleneck's term of a model's training output: the quantisers' codebook + β·commitment losses, or
        for a vae kl_weight · its KL (nats per image) per image dimension, as a mean over the batch."""
        if isinstance(output, VAEOutput):
            return self.config.kl_weight * output.kl.mean() / output.reconstruction[0].numel()
        return output.latent_loss

    def generator_loss(
        self,
        images: torch.Tensor,
        reconstruction: torch.Tensor,
        latent_loss: torch.Tensor,
        discriminator: nn.Module | None,
        last_layer: torch.Tensor,
        step: int,
        latent_name: str = "quantizer_loss",
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total generator objective: L_rec + w_q·L_latent + ramp·gan_weight·λ·L_GAN (GAN part only after
        disc_start_step). L_latent is the bottleneck's loss (`latent_loss`: the quantiser's, or a vae's β_KL·KL),
        logged as `latent_name`."""
        rec_loss, logs = self.reconstruction(images, reconstruction)
        loss = rec_loss + self.config.quantizer_weight * latent_loss
        logs[latent_name] = _scalar(latent_loss)
        if discriminator is not None and self.gan_active(step):
            gan_loss = generator_adversarial_loss(discriminator(reconstruction), self.config.gan_loss)
            weight = adaptive_gan_weight(
                rec_loss, gan_loss, last_layer, self.config.adaptive_weight_delta, self.config.adaptive_weight_max
            )
            ramp = self.gan_ramp(step)
            loss = loss + ramp * self.config.gan_weight * weight * gan_loss
            logs.update(gan_loss=_scalar(gan_loss), adaptive_weight=_scalar(weight), gan_ramp=ramp)
        logs["loss"] = _scalar(loss)
        return loss, logs

    def discriminator_loss(
        self, images: torch.Tensor, reconstruction: torch.Tensor, discriminator: nn.Module
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Patch-GAN loss on real images vs detached reconstructions."""
        real_logits = discriminator(images.detach())
        fake_logits = discriminator(reconstruction.detach())
        loss = discriminator_adversarial_loss(real_logits, fake_logits, self.config.gan_loss)
        return loss, {
            "disc_loss": _scalar(loss),
            "logits_real": _scalar(real_logits.mean()),
            "logits_fake": _scalar(fake_logits.mean()),
        }
