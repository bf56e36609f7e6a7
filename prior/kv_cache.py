"""A key/value cache for one-token-at-a-time sampling: preallocated like transformers' StaticCache (no
reallocation per step) yet attending only over the filled positions like its DynamicCache (no mask over
empty slots, and half the attention work on average over a grid)."""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in (B, heads, max_length, head_dim) buffers; `update` writes the new
    positions in place and returns views (B, heads, filled, head_dim) of what has been written so far."""

    is_croppable = False

    def __init__(self, max_length: int):
        super().__init__()
        self.max_length = max_length
        self.filled = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        b, heads, _, _ = key_states.shape
        self.dtype, self.device = key_states.dtype, key_states.device
        self.buffer_keys = key_states.new_empty(b, heads, self.max_length, key_states.shape[-1])
        self.buffer_values = value_states.new_empty(b, heads, self.max_length, value_states.shape[-1])
        self.keys, self.values = self.buffer_keys[:, :, :0], self.buffer_values[:, :, :0]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, stop = self.filled, self.filled + key_states.shape[-2]
        if stop > self.max_length:
            raise ValueError(f"cache of {self.max_length} positions cannot take position {stop - 1}")
        self.buffer_keys[:, :, start:stop] = key_states
        self.buffer_values[:, :, start:stop] = value_states
        self.filled = stop
        self.keys, self.values = self.buffer_keys[:, :, :stop], self.buffer_values[:, :, :stop]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.filled

    def get_max_length(self) -> int:
        return self.max_length

    def reset(self) -> None:
        self.filled = 0
        super().reset()

    # DynamicLayer's beam-search and cropping helpers rebuild `keys` without the buffers: refuse them rather
    # than return stale positions (GPTPrior.sample, the one user, needs none of them).
    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError("PreallocatedLayer supports update/reset only (no crop, reorder or batch edits)")

    crop = reorder_cache = batch_repeat_interleave = batch_select_indices = _unsupported


def preallocated_cache(num_layers: int, max_length: int) -> Cache:
    """A transformers `Cache` of `num_layers` PreallocatedLayers holding up to `max_length` positions."""
    return Cache(layers=[PreallocatedLayer(max_length) for _ in range(num_layers)])
