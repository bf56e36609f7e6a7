"""What both priors share when they sample: argument checks, condition tokens, guidance and token picking."""

from __future__ import annotations

import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None, guidance_scale: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: expected a positive value")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k}: expected None or a positive integer")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p}: expected None or a value in (0, 1]")
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale={guidance_scale}: expected a non-negative value (1.0 = no guidance)")


def class_labels_tensor(class_labels, batch_size: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Labels (B,) long, with -1 meaning 'no class'. Accepts None, an int, or a sequence/tensor of B ints."""
    if class_labels is None:
        return torch.full((batch_size,), -1, dtype=torch.long, device=device)
    labels = torch.as_tensor(class_labels, dtype=torch.long, device=device).flatten()
    if labels.numel() == 1:
        labels = labels.expand(batch_size)
    if labels.numel() != batch_size:
        raise ValueError(f"{labels.numel()} class labels for a batch of {batch_size}: expected one label or one per image")
    check_labels(labels, num_classes)
    return labels.clone()


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Labels must be -1 (none) or in [0, num_classes)."""
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if num_classes == 0 and high >= 0:
        raise ValueError(f"class label {high} given to a prior without classes (num_classes=0)")
    if low < -1 or high >= num_classes:
        raise ValueError(f"class labels span [{low}, {high}]; expected values in [0, {num_classes}) or -1 for none")


def check_codes(codes: torch.Tensor, grid_shape: tuple[int, int], codebook_size: int, name: str = "codes") -> None:
    if codes.ndim != 3 or tuple(codes.shape[1:]) != tuple(grid_shape):
        raise ValueError(f"{name} of shape {tuple(codes.shape)}: expected (B, {grid_shape[0]}, {grid_shape[1]})")
    if codes.dtype.is_floating_point:
        raise ValueError(f"{name} of dtype {codes.dtype}: expected integer code indices")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise ValueError(
            f"{name} span [{int(codes.min())}, {int(codes.max())}]; expected values in [0, {codebook_size})"
        )


def context_grids(context, batch_size: int, config) -> torch.Tensor | None:
    """The top grids (B, h_t, w_t) a bottom-level prior is conditioned on; None for a prior without a context.
    ValueError when a context is missing, unexpected or does not fit the config."""
    if not config.context_grid_shape:
        if context is not None:
            raise ValueError("context given to a prior without one (context_grid_shape is empty)")
        return None
    if context is None:
        raise ValueError(f"this prior is conditioned on a {config.context_grid_shape} grid of top codes: expected "
                         f"context (B, {config.context_grid_shape[0]}, {config.context_grid_shape[1]})")
    context = torch.as_tensor(context)
    check_codes(context, config.context_grid_shape, config.context_codebook_size, "context")
    if context.shape[0] != batch_size:
        raise ValueError(f"context for {context.shape[0]} grids: expected one per grid ({batch_size})")
    return context.long()


def prefix_tokens(prefix, batch_size: int, grid_shape: tuple[int, int], codebook_size: int, device) -> torch.Tensor:
    """A prefix as raster-order tokens (B, p): given as (B, p) tokens or (B, rows, w) whole code rows."""
    h, w = grid_shape
    if prefix is None:
        return torch.zeros(batch_size, 0, dtype=torch.long, device=device)
    prefix = torch.as_tensor(prefix, device=device)
    if prefix.ndim == 3:
        if prefix.shape[2] != w or prefix.shape[1] > h:
            raise ValueError(f"prefix of shape {tuple(prefix.shape)}: expected (B, rows <= {h}, {w}) code rows")
        prefix = prefix.flatten(1)
    if prefix.ndim != 2 or prefix.shape[0] != batch_size or prefix.shape[1] > h * w:
        raise ValueError(f"prefix of shape {tuple(prefix.shape)}: expected (B={batch_size}, p <= {h * w}) or (B, rows, {w})")
    if prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= codebook_size):
        raise ValueError(f"prefix codes span [{int(prefix.min())}, {int(prefix.max())}]; expected [0, {codebook_size})")
    return prefix.long()


def guide(logits: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance on a doubled batch [cond; uncond] (2B, V) -> uncond + s (cond - uncond) (B, V)."""
    cond, uncond = logits.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def pick_tokens(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Sample one token per row from (B, V) logits after temperature, top-k and top-p filtering: (B,) long."""
    scores = logits.float()
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None and top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
