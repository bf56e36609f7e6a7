"""Exponential moving average of a model's weights (float parameters and buffers)."""

from __future__ import annotations

import torch
from torch import nn


class WeightEMA:
    """shadow ← decay·shadow + (1 − decay)·weights after each optimiser step.

    Non-float buffers (flags, counters) are copied, not averaged. `state_dict()` is a plain
    name → tensor mapping so it can be written with safetensors.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay={decay}: expected a value in (0, 1)")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, value in model.state_dict().items():
            target = self.shadow[name]
            if value.is_floating_point():
                target.lerp_(value.detach().to(target.dtype), 1.0 - self.decay)
            else:
                target.copy_(value)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow, strict=True)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise ValueError(f"EMA state is missing {missing[:10]}")
        for name, value in state.items():
            if name in self.shadow:
                self.shadow[name].copy_(value)
