#!/usr/bin/env python
"""Benchmark: prior sampling and training speed on CPU, and prior quality on Fashion-MNIST codes.

1. Sampling, for the same GPT weights, batch 16, a 16x16 grid: tokens/s of `GPTPrior.sample` with the KV
   cache, of full recomputation without it, and of a minimal bare-PyTorch KV-cache loop over the same
   weights (goals: >= 5x over recomputation, within 1.25x of the bare loop).
2. Training tokens/s of our loop (PriorTrainer.train_step) against a bare PyTorch loop over the same model
   and data (goal: overhead <= 10%).
3. Validation bits per token of both priors after a fixed budget on Fashion-MNIST codes made by a "Stage
   one" tokenizer, beside the unigram entropy of the codes.

    python benchmarks/bench_prior.py --codes codes/fmnist-train        # codes from tokenize_dataset.py
    python benchmarks/bench_prior.py                                   # trains a small tokenizer and tokenizes first
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipelines import TokenizeDatasetConfig, tokenize_dataset
from prior import CodesDataset, GPTPrior, GPTPriorConfig
from prior.sampling import pick_tokens
from pipelines.training import train_prior
from pipelines.training_run import TrainingRun, read_metrics
from prior.training import PRIORS, PriorTrainer, TrainPriorConfig, prior_loss

ROOT = Path(__file__).resolve().parents[1]


# --- 1. sampling ------------------------------------------------------------------------------------------


def _rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return norm.weight * (x.float() * torch.rsqrt(variance + norm.variance_epsilon)).to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


@torch.no_grad()
def bare_kv_cache_sample(model: GPTPrior, condition: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A minimal hand-written Llama decode loop over the same weights: preallocated K/V, one token per step."""
    llama = model.transformer.model
    cfg = model.config
    b, n, heads = condition.shape[0], cfg.sequence_length, cfg.num_heads
    head_dim = cfg.hidden_size // heads
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(n).float(), inv_freq)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()  # (n, head_dim)
    keys = [torch.empty(b, heads, n, head_dim) for _ in llama.layers]
    values = [torch.empty(b, heads, n, head_dim) for _ in llama.layers]
    token, out = condition, []
    for pos in range(n):
        x = llama.embed_tokens(token)  # (B, D)
        for i, layer in enumerate(llama.layers):
            attn = layer.self_attn
            h = _rms_norm(x, layer.input_layernorm)
            q, k, v = (proj(h).view(b, heads, head_dim) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
            q, k = _rotate(q, cos[pos], sin[pos]), _rotate(k, cos[pos], sin[pos])
            keys[i][:, :, pos], values[i][:, :, pos] = k, v
            scores = torch.einsum("bhd,bhtd->bht", q, keys[i][:, :, : pos + 1]) / math.sqrt(head_dim)
            context = torch.einsum("bht,bhtd->bhd", scores.softmax(-1), values[i][:, :, : pos + 1])
            x = x + attn.o_proj(context.reshape(b, -1))
            h = _rms_norm(x, layer.post_attention_layernorm)
            x = x + layer.mlp.down_proj(F.silu(layer.mlp.gate_proj(h)) * layer.mlp.up_proj(h))
        logits = model.transformer.lm_head(_rms_norm(x, llama.norm))[:, : cfg.codebook_size]
        token = pick_tokens(logits, 1.0, None, None, generator)
        out.append(token)
    return torch.stack(out, 1).reshape(b, *cfg.grid_shape)


def sampling_speed(args) -> dict:
    torch.manual_seed(0)
    config = GPTPriorConfig.from_preset(args.sample_size, codebook_size=512, grid_shape=(16, 16), num_classes=0)
    model = GPTPrior(config).eval()
    batch, tokens = args.sample_batch, args.sample_batch * config.sequence_length
    condition = model.condition_tokens(None, batch, torch.device("cpu"))

    def timed(fn):
        start = time.perf_counter()
        result = fn()
        return result, tokens / (time.perf_counter() - start)

    # One untimed run of each fast loop first: first calls pay one-time costs (allocator, lazy init).
    model.sample(batch, generator=torch.Generator().manual_seed(0))
    bare_kv_cache_sample(model, condition, torch.Generator().manual_seed(0))
    # The fast loops take seconds, so one run is at the mercy of the machine's noise: time them in turns
    # and report each one's median.
    cached_runs, bare_runs = [], []
    for _ in range(args.sample_repeats):
        cached, tps = timed(lambda: model.sample(batch, generator=torch.Generator().manual_seed(0)))
        cached_runs.append(tps)
        bare, tps = timed(lambda: bare_kv_cache_sample(model, condition, torch.Generator().manual_seed(0)))
        bare_runs.append(tps)
    cached_tps, bare_tps = statistics.median(cached_runs), statistics.median(bare_runs)
    recomputed, recompute_tps = timed(lambda: model.sample(batch, generator=torch.Generator().manual_seed(0), use_cache=False))
    return {
        "model": f"gpt {args.sample_size} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)",
        "batch": batch, "grid": [16, 16], "repeats": args.sample_repeats,
        "cached_tokens_per_s": cached_tps,
        "recompute_tokens_per_s": recompute_tps,
        "bare_loop_tokens_per_s": bare_tps,
        "speedup_over_recompute": cached_tps / recompute_tps,
        "bare_loop_over_cached": bare_tps / cached_tps,
        # Same weights and generator: the three loops should draw the same tokens (fp rounding aside).
        "agreement_cached_vs_recompute": float((cached == recomputed).float().mean()),
        "agreement_cached_vs_bare": float((cached == bare).float().mean()),
        "goals": {"at_least_5x_recompute": cached_tps / recompute_tps >= 5, "within_1.25x_of_bare": bare_tps / cached_tps <= 1.25},
    }


# --- 2. training overhead ---------------------------------------------------------------------------------


def training_overhead(codes_dir: Path, args, workdir: Path) -> dict:
    config = TrainPriorConfig(codes_dir=str(codes_dir), output_dir=str(workdir / "overhead"), prior="gpt",
                              size=args.train_size, batch_size=args.batch_size, max_steps=10_000, warmup_steps=0,
                              validation_fraction=0.0, class_dropout=0.0, progress=False)
    trainer = PriorTrainer(config, TrainingRun(config, PriorTrainer.curves, project_name="gpt prior"))
    model = trainer.raw_model
    tokens_per_step = args.batch_size * math.prod(trainer.train_codes.grid_shape)
    trainer.train_step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.overhead_steps):
        trainer.train_step()
    ours = tokens_per_step * args.overhead_steps / (time.perf_counter() - start)

    # Bare loop: the same model class and batches held in memory, AdamW, clipping, nothing else.
    all_codes = torch.stack([trainer.train_codes[i][0] for i in range(len(trainer.train_codes))])
    bare_model = GPTPrior(model.config).train()
    opt = torch.optim.AdamW(bare_model.parameters(), lr=3e-4, weight_decay=0.05, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(0)

    def bare_step():
        batch = all_codes[torch.randint(len(all_codes), (args.batch_size,), generator=generator)]
        loss = prior_loss(bare_model, batch, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bare_model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    bare_step()
    start = time.perf_counter()
    for _ in range(args.overhead_steps):
        bare_step()
    bare = tokens_per_step * args.overhead_steps / (time.perf_counter() - start)
    return {"ours_tokens_per_s": ours, "bare_tokens_per_s": bare, "overhead": 1 - ours / bare,
            "goals": {"overhead_at_most_10pct": 1 - ours / bare <= 0.10}}


# --- 3. quality on Fashion-MNIST codes --------------------------------------------------------------------


def make_codes(workdir: Path, args) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_tokenize import train_small_tokenizer

    tokenizer = train_small_tokenizer(workdir / "tokenizer", args.tokenizer_steps, args.data_dir)
    codes = workdir / "codes"
    tokenize_dataset(tokenizer, TokenizeDatasetConfig(dataset="fashion-mnist", resize_mode="pad", output_dir=str(codes),
                                                      data_dir=args.data_dir, num_workers=1, progress=False))
    return codes


def unigram_entropy_bits(codes: CodesDataset) -> float:
    counts = codes.code_histogram()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def prior_quality(codes_dir: Path, args, workdir: Path) -> dict:
    result = {"unigram_entropy_bits": unigram_entropy_bits(CodesDataset(codes_dir)), "steps": args.quality_steps}
    for prior, size in (("gpt", args.train_size), ("pixelcnn", args.pixelcnn_size)):
        config = TrainPriorConfig(
            codes_dir=str(codes_dir), output_dir=str(workdir / prior), prior=prior, size=size,
            max_steps=args.quality_steps, batch_size=args.batch_size, learning_rate=1e-3, warmup_steps=50,
            eval_every=args.quality_steps, eval_batches=0, checkpoint_every=args.quality_steps,
            validation_fraction=0.05, progress=False,
        )
        start = time.perf_counter()
        output = train_prior(config)
        lines = read_metrics(output)
        model = PRIORS[prior][0].from_pretrained(output)
        result[prior] = {
            "size": size, "parameters": sum(p.numel() for p in model.parameters()),
            "val_bits_per_token": lines[-1]["val_bits_per_token"], "train_seconds": time.perf_counter() - start,
        }
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", default=None, help="Fashion-MNIST codes folder (default: make one)")
    parser.add_argument("--tokenizer_steps", type=int, default=300, help="when making codes: tokenizer training steps")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--sample_size", default="small", help="GPT preset for the sampling benchmark")
    parser.add_argument("--sample_batch", type=int, default=16)
    parser.add_argument("--sample_repeats", type=int, default=5, help="timed runs of each fast loop (median)")
    parser.add_argument("--train_size", default="small", help="GPT preset for training overhead and quality")
    parser.add_argument("--pixelcnn_size", default="small")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--overhead_steps", type=int, default=30)
    parser.add_argument("--quality_steps", type=int, default=600)
    parser.add_argument("--parts", default="sampling,training,quality", help="comma-separated subset to run")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))

    result = {"threads": torch.get_num_threads()}
    if "sampling" in parts:
        result["sampling"] = sampling_speed(args)
    # The stages' own lines (tokenize summary, resume notes) go to stderr: stdout stays one JSON object.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        tmp = Path(tmp)
        codes = Path(args.codes) if args.codes else make_codes(tmp, args) if parts - {"sampling"} else None
        if "training" in parts:
            result["training"] = training_overhead(codes, args, tmp)
        if "quality" in parts:
            result["quality"] = prior_quality(codes, args, tmp)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
