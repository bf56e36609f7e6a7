"""Vector quantiser: nearest-codebook lookup with the straight-through gradient copy.

Options against codebook collapse (the most reported VQ failure): EMA codebook updates with Laplace
smoothing of counts (VQ-VAE), dead-code restart from recent encoder outputs, k-means initialisation from
the first training batch, l2-normalised codes, and a low code dimension (LlamaGen's 8-dim lookup; the
projection to it is `VQGAN.quant_conv`). Distance and EMA maths run in fp32 even under autocast, and
every codebook statistic is all-reduced across processes so replicas keep identical codebooks.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


QUANTIZER_KINDS = ("vq", "fsq", "lfq")
# Mentzer et al. 2023 (FSQ), Table 3: levels per dimension for a target codebook size.
FSQ_LEVELS_FOR_SIZE = {2**8: (8, 6, 5), 2**10: (8, 5, 5, 5), 2**12: (7, 5, 5, 5, 5), 2**14: (8, 8, 8, 6, 5),
                       2**16: (8, 8, 8, 5, 5, 5)}
# The fields that choose and tune fsq and lfq (newer than the vq-only configs; a vq's fingerprint leaves them out).
QUANTIZER_CHOICE_FIELDS = ("kind", "fsq_levels", "lfq_entropy_weight", "lfq_diversity_gamma", "lfq_temperature")
LFQ_MAX_CODE_DIM = 14  # LFQ's batch entropy holds an (N, 2^code_dim) matrix


@dataclass
class QuantizerConfig:
    kind: str = field(default="vq", metadata={"flag": "quantizer", "help": (
        "vq: a learned codebook; fsq: finite scalar quantization (each code dimension rounded to --fsq_levels "
        "values; codebook_size and code_dim follow from them); lfq: lookup-free (one sign bit per code dimension, "
        "codebook_size = 2^code_dim, with MAGVIT-v2's entropy loss)")})
    codebook_size: int = field(default=256, metadata={"help": "number of codes"})
    code_dim: int = field(default=8, metadata={"help": "lookup dimension (LlamaGen uses 8)"})
    fsq_levels: tuple[int, ...] = field(default=(), metadata={"help": (
        "fsq: values per code dimension, e.g. 8,5,5,5 (1,000 codes); default: Mentzer et al.'s levels for "
        f"codebook_size {sorted(FSQ_LEVELS_FOR_SIZE)}")})
    # MAGVIT-v2's entropy loss, weight · (mean per-latent entropy − γ · entropy of the batch's mean assignment),
    # over soft assignments softmax(−‖z − c‖² / (2·T)); vector-quantize-pytorch's defaults 0.1, 1.0, 0.01.
    lfq_entropy_weight: float = field(default=0.1, metadata={"help": "lfq: weight of the entropy loss"})
    lfq_diversity_gamma: float = field(default=1.0, metadata={"help": "lfq: weight of the batch-entropy term"})
    lfq_temperature: float = field(default=0.01, metadata={"help": "lfq: temperature of the soft assignment"})
    # weight of the commitment term β‖z_e − sg[e]‖² (not of the codebook term)
    beta: float = field(default=0.25, metadata={"help": "commitment weight β (vq and lfq)"})
    use_ema: bool = field(default=True, metadata={
        "flag": "ema_codebook", "help": "vq: update each code by an EMA of the encoder outputs assigned to it",
        "off": "update the codebook by gradient (codebook loss) instead of EMA"})
    # 0.9, not the usual 0.99: at 0.99 the codebook trails an encoder trained at lr 1e-3 and collapses early
    # (docs/benchmarks.md, "Why the demo's reconstructions were smeared").
    ema_decay: float = field(default=0.9, metadata={
        "flag": "codebook_ema_decay", "help": "vq: decay of the codebook EMA and of the code counts for restarts"})
    ema_epsilon: float = field(default=1e-5, metadata={
        "help": "vq: Laplace smoothing of the codebook EMA's code counts (keeps unused codes finite)"})
    l2_normalize: bool = field(default=False, metadata={
        "flag": "l2_normalize_codes", "help": "vq: l2-normalised codes and lookup"})
    kmeans_init: bool = field(default=True, metadata={
        "help": "vq: initialise the codebook by k-means on the first training batch's encoder outputs",
        "off": "start from a random codebook (no k-means on the first batch)"})
    kmeans_iters: int = field(default=10, metadata={"help": "vq: Lloyd iterations of the k-means initialisation"})
    dead_code_threshold: float = field(default=1.0, metadata={
        "help": "vq: restart codes whose EMA count per batch falls below this; 0 = off"})
    usage_window: int = field(default=100, metadata={
        "help": "training batches over which codebook usage and perplexity are measured"})

    def __post_init__(self) -> None:
        if self.kind not in QUANTIZER_KINDS:
            raise ValueError(f"quantizer={self.kind!r}: expected one of {list(QUANTIZER_KINDS)}")
        self.fsq_levels = tuple(int(level) for level in self.fsq_levels)
        if self.fsq_levels and self.kind != "fsq":
            raise ValueError(f"fsq_levels={self.fsq_levels} with quantizer={self.kind!r}: levels are fsq's")
        if self.kind == "fsq":
            self._derive_fsq_sizes()
        elif self.kind == "lfq":
            self._derive_lfq_sizes()
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size={self.codebook_size}: expected at least 2 codes")
        if self.code_dim < 1:
            raise ValueError(f"code_dim={self.code_dim}: expected a positive code dimension")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay}: expected a value in (0, 1)")
        if self.beta < 0:
            raise ValueError(f"beta={self.beta}: expected a non-negative commitment weight")
        if self.dead_code_threshold < 0:
            raise ValueError(f"dead_code_threshold={self.dead_code_threshold}: expected >= 0")
        if self.usage_window < 1:
            raise ValueError(f"usage_window={self.usage_window}: expected at least 1 batch")
        if self.lfq_temperature <= 0:
            raise ValueError(f"lfq_temperature={self.lfq_temperature}: expected > 0")

    def _derive_fsq_sizes(self) -> None:
        """fsq: codebook_size = prod(levels) and code_dim = len(levels). A size left at its default follows the
        levels; one set to something else must agree with them."""
        default = QuantizerConfig.__dataclass_fields__
        if not self.fsq_levels:
            if self.codebook_size not in FSQ_LEVELS_FOR_SIZE:
                raise ValueError(f"quantizer='fsq' with codebook_size={self.codebook_size} and no fsq_levels: pass "
                                 f"--fsq_levels (e.g. 8,5,5,5) or a codebook_size in {sorted(FSQ_LEVELS_FOR_SIZE)}")
            self.fsq_levels = FSQ_LEVELS_FOR_SIZE[self.codebook_size]
        if min(self.fsq_levels) < 2:
            raise ValueError(f"fsq_levels={self.fsq_levels}: expected at least 2 values per dimension")
        size, dim = math.prod(self.fsq_levels), len(self.fsq_levels)
        for name, derived in (("codebook_size", size), ("code_dim", dim)):
            given = getattr(self, name)
            if given not in (derived, default[name].default) and not (name == "codebook_size" and
                                                                       given in FSQ_LEVELS_FOR_SIZE):
                raise ValueError(f"{name}={given} with fsq_levels={self.fsq_levels}: the levels give {derived}")
            setattr(self, name, derived)

    def _derive_lfq_sizes(self) -> None:
        """lfq: codebook_size = 2^code_dim; whichever of the two was left at its default follows the other."""
        default = QuantizerConfig.__dataclass_fields__
        if 2**self.code_dim != self.codebook_size:
            if self.code_dim == default["code_dim"].default and self.codebook_size & (self.codebook_size - 1) == 0:
                self.code_dim = self.codebook_size.bit_length() - 1
            elif self.codebook_size == default["codebook_size"].default:
                self.codebook_size = 2**self.code_dim
            else:
                raise ValueError(f"quantizer='lfq' with codebook_size={self.codebook_size} and code_dim="
                                 f"{self.code_dim}: expected codebook_size = 2^code_dim")
        if not 1 <= self.code_dim <= LFQ_MAX_CODE_DIM:
            raise ValueError(f"quantizer='lfq' with code_dim={self.code_dim}: expected 1 to {LFQ_MAX_CODE_DIM} bits")


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (B, D, h, w), straight-through: forward = codes, backward = identity
    indices: torch.Tensor  # (B, h, w) long
    loss: torch.Tensor  # codebook_loss + beta * commitment_loss
    codebook_loss: torch.Tensor  # what shapes the codes: VQ's codebook term, LFQ's weighted entropy loss, FSQ 0
    commitment_loss: torch.Tensor


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _broadcast_(tensor: torch.Tensor) -> torch.Tensor:
    """Make every process hold rank 0's values (random choices must agree across replicas)."""
    if _distributed():
        dist.broadcast(tensor, src=0)
    return tensor


def _all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    if not _distributed():
        return rows
    gathered = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, rows.contiguous())
    return torch.cat(gathered)


def nearest_code(vectors: torch.Tensor, codebook: torch.Tensor, chunk_elements: int = 1 << 25) -> torch.Tensor:
    """Index of the closest codebook row (squared L2) for each vector: (N, D), (K, D) -> (N,) long.

    Chunked over N so the (N, K) distance matrix stays bounded for large codebooks.
    """
    code_sq = codebook.pow(2).sum(1)  # (K,)
    rows = max(1, chunk_elements // codebook.shape[0])
    out = []
    for chunk in vectors.split(rows):
        dist_sq = chunk.pow(2).sum(1, keepdim=True) - 2 * chunk @ codebook.t() + code_sq  # (n, K)
        out.append(dist_sq.argmin(1))
    return torch.cat(out) if out else vectors.new_zeros(0, dtype=torch.long)


def kmeans(vectors: torch.Tensor, num_clusters: int, iters: int, spherical: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means: (N, D) -> centroids (K, D), cluster sizes (K,). Empty clusters keep their seed."""
    n = vectors.shape[0]
    if n >= num_clusters:
        seeds = torch.randperm(n, device=vectors.device)[:num_clusters]
    else:  # fewer vectors than codes: sample with replacement
        seeds = torch.randint(n, (num_clusters,), device=vectors.device)
    centroids = vectors[seeds].clone()
    counts = torch.zeros(num_clusters, device=vectors.device)
    for _ in range(max(1, iters)):
        assign = nearest_code(vectors, centroids)
        counts = torch.bincount(assign, minlength=num_clusters).float()
        sums = torch.zeros_like(centroids).index_add_(0, assign, vectors)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        if spherical:
            centroids = F.normalize(centroids, dim=1)
    return centroids, counts


class CodeUsage(nn.Module):
    """What every quantiser shares: its config, and the code counts of its recent training batches (all-reduced
    across processes) for usage and perplexity. A subclass names the `kind` of config it is built from."""

    kind: ClassVar[str]

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        if config.kind != self.kind:
            raise ValueError(f"quantizer={config.kind!r}: a {type(self).__name__} is {self.kind!r}; build any with "
                             "build_quantizer")
        self.config = config
        self._window: collections.deque[torch.Tensor] = collections.deque(maxlen=config.usage_window)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def _latent_rows(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, d, h, w) → fp32 rows (B*h*w, d), one per grid position, after checking d."""
        if latents.ndim != 4 or latents.shape[1] != self.config.code_dim:
            raise ValueError(f"latents of shape {tuple(latents.shape)}; expected (B, code_dim={self.config.code_dim}, "
                             "h, w)")
        return latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])

    @staticmethod
    def _on_grid(latents: torch.Tensor, quantized: torch.Tensor, indices: torch.Tensor, codebook_loss: torch.Tensor,
                 commitment_loss: torch.Tensor, loss: torch.Tensor) -> QuantizerOutput:
        """Rows back on the latents' grid: quantized (N, d) → (B, d, h, w), indices (N,) → (B, h, w)."""
        b, d, h, w = latents.shape
        return QuantizerOutput(quantized=quantized.reshape(b, h, w, d).permute(0, 3, 1, 2),
                               indices=indices.reshape(b, h, w), loss=loss, codebook_loss=codebook_loss,
                               commitment_loss=commitment_loss)

    @torch.no_grad()
    def _count_codes_(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (N,) → this step's counts (K,) over every process, kept in the window."""
        counts = _all_reduce_sum_(torch.bincount(indices, minlength=self.codebook_size).float())
        self._window.append(counts.cpu())
        return counts

    def reset_window(self) -> None:
        self._window.clear()

    def window_stats(self) -> dict[str, float]:
        """Codebook usage (fraction of codes hit) and perplexity over the recent training batches."""
        if not self._window:
            return {"codebook_usage": 0.0, "perplexity": 0.0}
        return code_statistics(torch.stack(list(self._window)).sum(0))


class VectorQuantizer(CodeUsage):
    """Latents (B, D, h, w) → nearest codes, indices (B, h, w) and the VQ losses."""

    kind = "vq"

    def __init__(self, config: QuantizerConfig):
        super().__init__(config)
        k, d = config.codebook_size, config.code_dim
        init = torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k)
        if config.l2_normalize:
            init = F.normalize(torch.randn(k, d), dim=1)
        if config.use_ema:
            # EMA codebooks are statistics, not parameters: no optimiser touches them.
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(k))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("usage_ema", torch.zeros(k))  # EMA of per-batch counts, for dead-code restart
        self.register_buffer("initialized", torch.tensor(not config.kmeans_init))

    def normalized_codebook(self) -> torch.Tensor:
        """The codebook as used for lookup, fp32: (K, D)."""
        codebook = self.codebook.float()
        return F.normalize(codebook, dim=1) if self.config.l2_normalize else codebook

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for indices: (B, h, w) long → (B, D, h, w)."""
        return F.embedding(indices, self.normalized_codebook()).permute(0, 3, 1, 2).contiguous()

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        flat = self._latent_rows(latents)  # (N, D), N = B*h*w
        with torch.autocast(device_type=latents.device.type, enabled=False):
            if self.config.l2_normalize:
                flat = F.normalize(flat, dim=1)
            if self.training:
                self._prepare_codebook_(flat.detach())
            codebook = self.normalized_codebook()
            indices = nearest_code(flat.detach(), codebook)  # (N,)
            codes = F.embedding(indices, codebook)  # (N, D); grads reach a learned codebook
            commitment = F.mse_loss(flat, codes.detach())
            if self.config.use_ema:
                codebook_loss = commitment.new_zeros(())
            else:
                codebook_loss = F.mse_loss(codes, flat.detach())
            if self.training:
                self._update_statistics_(flat.detach(), indices)
            quantized = flat + (codes - flat).detach()  # straight-through gradient copy
        return self._on_grid(latents, quantized, indices, codebook_loss, commitment,
                             loss=codebook_loss + self.config.beta * commitment)

    # --- training-time codebook maintenance -------------------------------------------------------

    @torch.no_grad()
    def _prepare_codebook_(self, flat: torch.Tensor) -> None:
        if not bool(self.initialized):
            self._kmeans_init_(flat)
        elif self.config.dead_code_threshold > 0:
            self._restart_dead_codes_(flat)

    @torch.no_grad()
    def _kmeans_init_(self, flat: torch.Tensor) -> None:
        centroids, counts = kmeans(
            _all_gather_rows(flat), self.codebook_size, self.config.kmeans_iters, self.config.l2_normalize
        )
        _broadcast_(centroids)
        _broadcast_(counts)
        self._set_codes_(torch.arange(self.codebook_size, device=flat.device), centroids, counts.clamp(min=1.0))
        self.usage_ema.copy_(counts / _world_size())  # counts per process-batch, like the EMA updates
        self.initialized.fill_(True)

    @torch.no_grad()
    def _restart_dead_codes_(self, flat: torch.Tensor) -> None:
        dead = (self.usage_ema < self.config.dead_code_threshold).nonzero().squeeze(1)  # same on every rank
        if dead.numel() == 0:
            return
        pick = torch.randint(flat.shape[0], (dead.numel(),), device=flat.device)
        replacements = _broadcast_(flat[pick].clone())  # (num_dead, D), rank 0's encoder outputs
        self._set_codes_(dead, replacements, torch.ones(dead.numel(), device=flat.device))
        self.usage_ema[dead] = self.config.dead_code_threshold

    def _set_codes_(self, rows: torch.Tensor, vectors: torch.Tensor, counts: torch.Tensor) -> None:
        self.codebook.data[rows] = vectors.to(self.codebook.dtype)
        if self.config.use_ema:
            self.ema_count[rows] = counts
            self.ema_sum[rows] = vectors * counts[:, None]

    @torch.no_grad()
    def _update_statistics_(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        k, decay = self.codebook_size, self.config.ema_decay
        counts = self._count_codes_(indices)  # (K,)
        self.usage_ema.mul_(decay).add_(counts / _world_size(), alpha=1 - decay)
        if not self.config.use_ema:
            return
        sums = _all_reduce_sum_(torch.zeros(k, flat.shape[1], device=flat.device).index_add_(0, indices, flat))
        self.ema_count.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(sums, alpha=1 - decay)
        # Laplace smoothing keeps unused codes from dividing by zero: (n_k + ε) / (n + Kε) · n
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.config.ema_epsilon) / (total + k * self.config.ema_epsilon) * total
        self.codebook.copy_(self.ema_sum / smoothed[:, None])


def code_statistics(counts: torch.Tensor) -> dict[str, float]:
    """Usage and perplexity from code counts (K,): perplexity = exp(entropy of the code distribution)."""
    counts = counts.double()
    probs = counts / counts.sum().clamp(min=1)
    entropy = -(probs * probs.clamp(min=1e-30).log()).sum()
    return {"codebook_usage": float((counts > 0).double().mean()), "perplexity": float(math.exp(entropy))}


LEVELS = ("top", "bottom")  # a two-level model's grids, coarsest first


def level_statistics(per_level: list[dict[str, float]]) -> dict[str, float]:
    """Statistics of each level's codebook as one dict. One level: as they are. Two levels: each key prefixed
    top_ / bottom_, and `codebook_usage` the lower of the two, so a collapse at either level shows in one figure."""
    if len(per_level) == 1:
        return dict(per_level[0])
    merged = {f"{level}_{name}": value for level, stats in zip(LEVELS, per_level) for name, value in stats.items()}
    merged["codebook_usage"] = min(stats["codebook_usage"] for stats in per_level)
    return merged


def _world_size() -> int:
    return dist.get_world_size() if _distributed() else 1
