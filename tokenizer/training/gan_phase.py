"""Did the GAN phase wreck the reconstructions? The most reported VQ-GAN failure (taming-transformers users):
once the discriminator starts, PSNR falls away or the codebook collapses. This compares the training logs
just before the discriminator's start with the end of the run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class GANPhaseCheck:
    disc_start_step: int
    psnr_before: float  # mean training PSNR (dB) over the last `window` records before the start
    psnr_after: float  # ... over the run's last `window` records
    usage_before: float  # codebook usage (fraction of codes) likewise
    usage_after: float
    collapsed: bool
    reason: str  # what failed, "" when nothing did

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(records: list[dict], name: str) -> float:
    values = [r[name] for r in records if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
    return sum(values) / len(values) if values else float("nan")


def check_gan_phase(records: list[dict], disc_start_step: int, window: int = 4, max_psnr_drop_db: float = 2.0,
                    max_usage_drop: float = 0.2) -> GANPhaseCheck | None:
    """Compare the training records ({"step", "psnr", "codebook_usage", ...}, as in metrics.jsonl) before
    `disc_start_step` with the last ones. None when the run never logged on both sides of the start.

    Collapsed when PSNR ends more than `max_psnr_drop_db` below its level before the start, or usage more than
    `max_usage_drop` (an absolute fraction of the codebook) below it; a NaN PSNR afterwards is a collapse too.
    A healthy GAN phase costs a few tenths of a dB of PSNR for sharper images; it never costs several dB.
    """
    before = [r for r in records if r["step"] < disc_start_step][-window:]
    after = [r for r in records if r["step"] > disc_start_step][-window:]
    if not before or not after:
        return None
    psnr_before, psnr_after = _mean(before, "psnr"), _mean(after, "psnr")
    usage_before, usage_after = _mean(before, "codebook_usage"), _mean(after, "codebook_usage")
    reasons = []
    if not math.isfinite(psnr_after) or psnr_after < psnr_before - max_psnr_drop_db:
        reasons.append(f"PSNR fell from {psnr_before:.2f} to {psnr_after:.2f} dB")
    if usage_after < usage_before - max_usage_drop:
        reasons.append(f"codebook usage fell from {usage_before:.2f} to {usage_after:.2f}")
    return GANPhaseCheck(disc_start_step, psnr_before, psnr_after, usage_before, usage_after, bool(reasons),
                         "; ".join(reasons))
