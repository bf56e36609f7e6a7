"""Lookup-free quantisation (MAGVIT-v2: Yu et al. 2023, "Language Model Beats Diffusion").

Each of the d latent dimensions becomes one bit, its sign: the codebook is the 2^d corners of {-1, 1}^d and the
index is the binary number of the bits. Usage is kept up by an entropy loss on soft assignments
q(c | z) ∝ exp(-‖z − c‖² / (2T)): low entropy per latent (each commits to a code) and high entropy of the
batch's mean assignment (the batch spreads over the codes), plus a commitment loss pulling z to its corner.
q factorises over the bits, so the per-latent entropy is a sum of d binary entropies; the batch's mean does not,
and is formed over all 2^d codes (hence LFQ_MAX_CODE_DIM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .quantizer import CodeUsage, QuantizerConfig, QuantizerOutput


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp(min=1e-12).log() + (1 - p) * (1 - p).clamp(min=1e-12).log())


class LookupFreeQuantizer(CodeUsage):
    """Latents (B, d, h, w) → sign codes in {-1, 1}, indices (B, h, w) in [0, 2^d), and the LFQ losses."""

    kind = "lfq"

    def __init__(self, config: QuantizerConfig):
        super().__init__(config)
        self.register_buffer("bit_values", 2 ** torch.arange(config.code_dim), persistent=False)  # (d,)

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, h, w) long → code vectors (B, d, h, w) in {-1, 1}."""
        bits = (indices.unsqueeze(-1) // self.bit_values) % 2  # (B, h, w, d)
        return (bits.float() * 2 - 1).permute(0, 3, 1, 2).contiguous()

    def entropy_loss(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, d) latents → mean per-latent entropy − γ · entropy of the mean assignment, in nats."""
        # q(bit_i = 1 | z) = σ(logit): the two corners differ by 2 in coordinate i, so the squared distances differ
        # by 4 z_i, and the logit is 4 z_i / (2T) = 2 z_i / T.
        logits = 2 * flat / self.config.lfq_temperature  # (N, d)
        per_latent = _binary_entropy(torch.sigmoid(logits)).sum(1).mean()
        corners = ((torch.arange(self.codebook_size, device=flat.device).unsqueeze(1) // self.bit_values) % 2).float()
        # log q(c | z) = sum_i [b_i log σ(l_i) + (1 − b_i) log σ(−l_i)]: (N, K)
        log_q = F.logsigmoid(logits) @ corners.t() + F.logsigmoid(-logits) @ (1 - corners).t()
        mean_q = log_q.exp().mean(0)  # (K,)
        batch = -(mean_q * mean_q.clamp(min=1e-12).log()).sum()
        return per_latent - self.config.lfq_diversity_gamma * batch

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        flat = self._latent_rows(latents)  # (N, d)
        with torch.autocast(device_type=latents.device.type, enabled=False):
            positive = flat > 0
            codes = positive.float() * 2 - 1
            indices = (positive.long() * self.bit_values).sum(1)
            commitment = F.mse_loss(flat, codes)
            entropy = (self.config.lfq_entropy_weight * self.entropy_loss(flat) if self.training
                       else commitment.new_zeros(()))
            if self.training:
                self._count_codes_(indices)
            quantized = flat + (codes - flat).detach()  # straight-through
        return self._on_grid(latents, quantized, indices, entropy, commitment,
                             loss=entropy + self.config.beta * commitment)
