#!/usr/bin/env python
"""Benchmark: prior sampling and training speed, and prior quality on Fashion-MNIST codes.

1. Sampling (issue 13), random weights, a 16x16 grid of 1,024 codes, class-conditional, top-k 100, all threads:
   for the 26M-parameter GPT (8 layers, width 512, SwiGLU 1344) and the small preset at batch 1, 16 and 64,
   tokens/s of `GPTPrior.sample`, of transformers' generate() on the same model, and of the weight-matmul floor
   (the decode step's matmuls alone over fused weights: every weight read once per step, the memory-bound
   limit), with our share of that floor (goal: >= 0.6 for the 26M model at batch 16); then images/s of the
   small GPT and of a PixelCNN of the same parameter count, and the PixelCNN row cache against recomputing
   the grid per cell (same samples). `--device cuda` samples on a GPU (add `--sample_batches 1,16,64,256`);
   `--compile` adds our compiled static step (CUDA graphs there) and generate() with a static cache.
2. Training tokens/s of our loop (PriorTrainer.train_step) against a bare PyTorch loop over the same model
   and data (goal: overhead <= 10%).
3. Validation bits per token of both priors after a fixed budget on Fashion-MNIST codes made by a "Stage
   one" tokenizer, beside the unigram entropy of the codes.

    python benchmarks/bench_prior.py --codes codes/fmnist-train        # codes from tokenize_dataset.py
    python benchmarks/bench_prior.py                                   # trains a small tokenizer and tokenizes first
    python benchmarks/bench_prior.py --parts sampling --device cuda --compile --sample_batches 1,16,64,256
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.cli import emit_json
from pipelines import TokenizeDatasetConfig, tokenize_dataset
from pipelines.training import train_prior
from pipelines.training_run import TrainingRun, read_metrics
from prior import GPT_PRESETS, CodesDataset, GPTPrior, GPTPriorConfig, PixelCNNPrior, PixelCNNPriorConfig
from prior.decode_step import FusedLlamaDecoder
from prior.loading import PRIOR_CLASSES
from prior.training import PriorTrainer, TrainPriorConfig, prior_loss

ROOT = Path(__file__).resolve().parents[1]


# --- 1. sampling ------------------------------------------------------------------------------------------

# The GPT priors sampled: the 26M-parameter configuration issue 13 measured from outside, and the small preset.
# Both over 1,024 codes on a 16x16 grid with 8 classes (+ the null token), one class token then 256 codes.
# "llamagen-B": LlamaGen's GPT-B as `tessera convert --source llamagen-gpt` builds it from c2i_B_256.pt (111M
# parameters, 16,384 VQ-16 codes on 16x16, 1,000 classes, 2-D rotary positions), random weights.
SAMPLING_MODELS = {
    "26M": dict(hidden_size=512, num_layers=8, num_heads=8, intermediate_size=1344),
    "small": dict(GPT_PRESETS["small"]),
    "llamagen-B": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=2048, codebook_size=16384,
                       num_classes=1000, positions="grid", zero_condition_rope=True, rms_norm_eps=1e-5),
}
SAMPLING_GRID, SAMPLING_CODES, SAMPLING_CLASSES, SAMPLING_TOP_K = (16, 16), 1024, 8, 100


def sampling_gpt(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> GPTPrior:
    torch.manual_seed(0)
    config = GPTPriorConfig(**{"codebook_size": SAMPLING_CODES, "grid_shape": SAMPLING_GRID,
                               "num_classes": SAMPLING_CLASSES, **SAMPLING_MODELS[name]})
    return GPTPrior(config).eval().to(device=device, dtype=dtype)


def synchronize() -> None:
    """Wait for the GPU's queued kernels (timings end when the work does, not when it is launched)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved_seconds(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of `repeats` calls of each function, taken in rounds (one call of each per round) after one
    untimed call of each (first calls pay allocator and lazy-init costs, and compilation). Rounds, not one
    function's repeats after another's: this machine's speed drifts by 20% and more within minutes, and a ratio
    of two timings is only fair when both were taken at the same time."""
    for fn in fns.values():
        fn()
    synchronize()
    times = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            synchronize()
            times[key].append(time.perf_counter() - start)
    return times


def median_seconds(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one untimed call."""
    return statistics.median(interleaved_seconds({"fn": fn}, repeats)["fn"])


@torch.no_grad()
def weight_floor_step(model: GPTPrior, batch: int):
    """The decode step's weight matmuls alone, as `step()`: per layer x @ qkv, a @ out, x @ gate_up, m @ down
    over distinct fused (in, out) weights, then the code head; every weight is read once per step. At these
    batches a step is memory-bound, so this is the speed no decode step can beat by much (on a GPU the
    matmuls are launched one by one from Python, so there it is a launch-bound reference, not a floor)."""
    decoder = FusedLlamaDecoder(model.transformer, model.config.codebook_size, batch, max_length=1)
    hidden, inner = model.config.hidden_size, decoder.layers[0].down.shape[0]
    like = decoder.head
    x, m = torch.randn(batch, hidden).to(like), torch.randn(batch, inner).to(like)

    def step():
        for layer in decoder.layers:
            x @ layer.qkv, x @ layer.out, x @ layer.gate_up, m @ layer.down
        return x @ decoder.head

    return step


@torch.no_grad()
def generate_codes(model: GPTPrior, labels: torch.Tensor, **generate_kwargs) -> torch.Tensor:
    """transformers' generate() on the same model: the class token, then 256 sampled tokens (top-k 100)."""
    prompt = model.condition_tokens(labels, labels.shape[0], labels.device)[:, None]
    n = model.config.sequence_length
    return model.transformer.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                                      min_new_tokens=n, do_sample=True, top_k=SAMPLING_TOP_K,
                                      pad_token_id=model.config.null_token, **generate_kwargs)


def sampling_speed(args) -> dict:
    """GPT tokens/s: ours, generate() and the weight-matmul floor at each batch (with --compile also our compiled
    static step and generate() with a static cache, which transformers compiles on a GPU); PixelCNN images/s
    beside."""
    device, dtype = args.device, getattr(torch, args.dtype)
    rows = {}
    for name in args.sample_models.split(","):
        model = sampling_gpt(name, device, dtype)
        n = model.config.sequence_length
        row = {"parameters": sum(p.numel() for p in model.parameters()), "codebook_size": model.config.codebook_size}
        for batch in (int(b) for b in args.sample_batches.split(",")):
            labels = torch.arange(batch, device=device) % SAMPLING_CLASSES
            samplers = {}
            for compiled in (False, True) if args.compile else (False,):
                samplers["ours_compiled" if compiled else "ours"] = lambda compiled=compiled: model.sample(
                    batch, class_labels=labels, top_k=SAMPLING_TOP_K, compile=compiled,
                    generator=torch.Generator(device).manual_seed(0))
            samplers["generate"] = lambda: generate_codes(model, labels)
            if args.compile:
                samplers["generate_static_cache"] = lambda: generate_codes(model, labels, cache_implementation="static")
            step = weight_floor_step(model, batch)
            samplers["floor"] = lambda: [step() for _ in range(n)]
            times = interleaved_seconds(samplers, args.sample_repeats)
            # Per round: our best sampler against the floor and against the best generate() of that round.
            ours = [min(pair) for pair in zip(times["ours"], times.get("ours_compiled", times["ours"]))]
            theirs = [min(pair) for pair in zip(times["generate"], times.get("generate_static_cache", times["generate"]))]
            row[f"batch_{batch}"] = {
                **{f"{key}_tokens_per_s": round(batch * n / statistics.median(value), 1) for key, value in times.items()},
                "share_of_floor": round(statistics.median(f / o for f, o in zip(times["floor"], ours)), 3),
                "over_generate": round(statistics.median(g / o for g, o in zip(theirs, ours)), 2),
            }
        rows[f"gpt {name}"] = row
    rows["pixelcnn_vs_gpt"] = pixelcnn_speed(args)
    return {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu", "dtype": args.dtype,
            "grid": list(SAMPLING_GRID), "codebook_size": SAMPLING_CODES, "top_k": SAMPLING_TOP_K,
            "repeats": args.sample_repeats, **rows}


def pixelcnn_of_size(parameters: int, device: str = "cpu", dtype: torch.dtype = torch.float32) -> PixelCNNPrior:
    """The PixelCNN (small preset's depth, raised for the grid) whose width brings it nearest `parameters`."""
    def build(channels: int) -> PixelCNNPrior:
        torch.manual_seed(0)
        config = PixelCNNPriorConfig.from_preset("small", codebook_size=SAMPLING_CODES, grid_shape=SAMPLING_GRID,
                                                 num_classes=SAMPLING_CLASSES, hidden_channels=channels)
        return PixelCNNPrior(config).eval()

    count = lambda channels: sum(p.numel() for p in build(channels).parameters())  # noqa: E731
    return build(min(range(16, 513, 16), key=lambda c: abs(count(c) - parameters))).to(device=device, dtype=dtype)


def pixelcnn_speed(args) -> dict:
    """Images/s of the GPT (small) and a PixelCNN of the same parameter count, one batch each; the PixelCNN's
    row cache against recomputing the grid for every cell (the per-cell work it replaced) on a few images."""
    device, dtype = args.device, getattr(torch, args.dtype)
    gpt = sampling_gpt("small", device, dtype)
    gpt_parameters = sum(p.numel() for p in gpt.parameters())
    pixelcnn = pixelcnn_of_size(gpt_parameters, device, dtype)
    batch, labels = args.pixelcnn_batch, torch.arange(args.pixelcnn_batch, device=device) % SAMPLING_CLASSES
    generator = lambda: torch.Generator(device).manual_seed(0)  # noqa: E731
    result = {"batch": batch, "gpt_parameters": gpt_parameters,
              "pixelcnn_parameters": sum(p.numel() for p in pixelcnn.parameters()),
              "pixelcnn_channels": pixelcnn.config.hidden_channels, "pixelcnn_layers": pixelcnn.config.num_layers}
    for name, model in (("gpt", gpt), ("pixelcnn", pixelcnn)):
        seconds = median_seconds(lambda: model.sample(batch, class_labels=labels, top_k=SAMPLING_TOP_K,
                                                      generator=generator()), 1)
        result[f"{name}_images_per_s"] = round(batch / seconds, 2)
    kwargs = dict(class_labels=torch.arange(2, device=device), top_k=SAMPLING_TOP_K)
    cached = median_seconds(lambda: pixelcnn.sample(2, generator=generator(), **kwargs), 1)
    start = time.perf_counter()
    recomputed = pixelcnn.sample(2, generator=generator(), use_cache=False, **kwargs)
    synchronize()
    recompute = time.perf_counter() - start
    same = torch.equal(recomputed, pixelcnn.sample(2, generator=generator(), **kwargs))
    result.update({"pixelcnn_row_cache_speedup_at_batch_2": round(recompute / cached, 1),
                   "pixelcnn_row_cache_same_samples": same})
    return result


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
        model = PRIOR_CLASSES[prior].from_pretrained(output)
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
    parser.add_argument("--sample_models", default="26M,small", help=f"GPT priors to sample: of {sorted(SAMPLING_MODELS)}")
    parser.add_argument("--sample_batches", default="1,16,64", help="batch sizes to sample at")
    parser.add_argument("--sample_repeats", type=int, default=3, help="timed runs of each sampler (median)")
    parser.add_argument("--pixelcnn_batch", type=int, default=16, help="batch of the PixelCNN-vs-GPT images/s")
    parser.add_argument("--device", default="cpu", help="where the sampling part runs (cpu, cuda)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="the sampled models' dtype")
    parser.add_argument("--compile", action="store_true",
                        help="also time GPTPrior.sample(compile=True) (CUDA graphs on a GPU) and generate() with a "
                             "static cache (compiled by transformers on a GPU)")
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
    emit_json(result, args.output_json)
    return result


if __name__ == "__main__":
    main()
