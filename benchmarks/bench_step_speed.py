#!/usr/bin/env python
"""Benchmark: where one training step's time goes on this CPU, and which speed options pay (issue "Training
speed: profile a tokenizer step and a prior step").

Both stages run the project's own step (TokenizerTrainer.train_step, PriorTrainer.train_step) on a run built as
pipelines.training builds it; every measurement is warm-up steps, then timed steps (s/step: their median).

1. Tokenizer (benchmarks/configs/tokenizer-fmnist-grid16.json by default: Fashion-MNIST train padded to 32 px,
   a 16x16 grid of 256 codes, ST-LPIPS-alex perceptual loss, patch discriminator), with the discriminator on
   from step 0 so every timed step has the GAN's two extra passes.
   - Breakdown by ablation at the same batch: the full step; without the perceptual loss; without the GAN;
     the time the step waited on the DataLoader; a batch fetched back-to-back from a worker and decoded in
     process; `opt.step()` of the generator's AdamW alone (the trainer's, and foreach / fused over the same
     parameters and gradients).
   - Op shares: torch.profiler (CPU) over full steps; self CPU time grouped into convolution (op names with
     "conv"), matmul (mm, addmm, bmm, linear, matmul and their backwards), optimizer (inside Optimizer.step /
     zero_grad, or names with "adam" / "_foreach"), data_wait (inside the DataLoader's next) and other.
   - Options against the baseline step: bf16 autocast (the config's mixed_precision), channels_last (model,
     discriminator, perceptual network and images), AdamW foreach=True / fused=True (replacing the trainer's
     optimisers), and with --compile torch.compile of the model, discriminator and perceptual network.
2. Prior: the "small-32px" GPT over 256 codes (16x16 grids, 256 codes, 10 classes; random codes written with
   prior.CodesWriter), fp32 against bf16, AdamW foreach / fused and (--compile) torch.compile; s/step, tokens/s.

"Equal results": every variant starts from the same seed, weights and batches, so each reports the loss of its
first timed step, and the tokenizer the PSNR of the first --eval_images training images after its timed steps
(the prior's codes are random, so its losses compare the arithmetic only). The numbers are reported, not judged.
Host syncs (`.item()` in the logs) are not a variant: on a CPU there is no device queue for them to drain.
A variant that fails (torch.compile needs a C++ compiler) reports its error as a string.

    python benchmarks/bench_step_speed.py --output_json outputs/bench_step_speed.json
    python benchmarks/bench_step_speed.py --parts prior --compile
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn

from pipelines.cli import config_from_dict, config_from_preset, emit_json, merge_settings, read_config_file
from pipelines.training_run import TrainingRun
from prior import CodesWriter
from prior.presets import PRIOR_PRESETS
from prior.training import PriorTrainer, TrainPriorConfig
from tokenizer.data import collate_images
from tokenizer.training import TokenizerTrainer, TrainTokenizerConfig
from tokenizer.training.batches import ResumableBatches
from tokenizer.training.trainer import _batch_psnr, generator_step

CONFIGS = Path(__file__).parent / "configs"
# The prior's synthetic codes: the grid16 tokenizer's shape (16x16 grid, 256 codes) and Fashion-MNIST's classes.
GRID, CODEBOOK_SIZE, NUM_CLASSES = (16, 16), 256, 10
# Profiler op names (lower case, namespace dropped) counted as matrix multiplies; backwards start the same way.
MATMUL_PREFIXES = ("mm", "addmm", "_addmm", "bmm", "baddbmm", "linear", "_mkl_linear", "mkldnn_linear", "matmul")


@dataclass
class Variant:
    """One way to run the same step: `settings` laid over the training config, plus what a config cannot say."""

    settings: dict = field(default_factory=dict)
    adamw: str = "default"  # "default" (the trainer's), "foreach" or "fused"
    channels_last: bool = False
    compile: bool = False


TOKENIZER_VARIANTS = {
    "baseline": Variant(),
    "bf16": Variant({"mixed_precision": "bf16"}),
    "channels_last": Variant(channels_last=True),
    "adamw_foreach": Variant(adamw="foreach"),
    "adamw_fused": Variant(adamw="fused"),
    "compile": Variant(compile=True),
}
TOKENIZER_ABLATIONS = {
    "without_perceptual": Variant({"loss": {"perceptual_loss": "none"}}),
    "without_gan": Variant({"loss": {"gan_weight": 0.0}}),
}
PRIOR_VARIANTS = {
    "baseline": Variant(),
    "bf16": Variant({"mixed_precision": "bf16"}),
    "adamw_foreach": Variant(adamw="foreach"),
    "adamw_fused": Variant(adamw="fused"),
    "compile": Variant(compile=True),
}


# --- shared -----------------------------------------------------------------------------------------------


def cpu_setup() -> dict:
    """What the timings depend on: threads, torch, the CPU and whether it has native bf16."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "cpu": model or platform.processor(), "bf16_flags": [f for f in ("avx512_bf16", "amx_bf16") if f in flags]}


@contextlib.contextmanager
def adamw_flavour(flavour: str):
    """torch.optim.AdamW as the trainers call it, with foreach=True or fused=True, while a trainer is built."""
    if flavour == "default":
        yield
        return
    base = torch.optim.AdamW

    class FlavouredAdamW(base):
        def __init__(self, params, **kwargs):
            super().__init__(params, **kwargs, **{flavour: True})

    with mock.patch.object(torch.optim, "AdamW", FlavouredAdamW):
        yield


def timed(step: Callable[[], dict | None], steps: int) -> tuple[list[float], list[dict | None]]:
    """Seconds and outputs of `steps` calls of `step`."""
    seconds, outputs = [], []
    for _ in range(steps):
        start = time.perf_counter()
        outputs.append(step())
        seconds.append(time.perf_counter() - start)
    return seconds, outputs


def summary(seconds: list[float]) -> dict:
    return {"s_per_step": round(statistics.median(seconds), 4), "mean_s": round(statistics.mean(seconds), 4),
            "min_s": round(min(seconds), 4), "timed_steps": len(seconds)}


def failure(error: BaseException) -> str:
    """An error as one string for the JSON (the traceback goes to stderr)."""
    traceback.print_exc(file=sys.stderr)
    return f"{type(error).__name__}: {error}".strip()[:2000]


def compile_in_place(*modules: nn.Module | None) -> None:
    # nn.Module.compile keeps the module object, so optimisers and accelerate's references stay valid.
    for module in modules:
        if module is not None:
            module.compile()


def released() -> None:
    """Free one variant's trainer (its dataset, models and DataLoader worker) before the next is built."""
    gc.collect()


# --- 1. tokenizer -----------------------------------------------------------------------------------------


class WaitClock:
    """Wraps a batch iterator and adds up the seconds spent waiting in `next()`: the step's data loading."""

    def __init__(self, batches: Iterator[dict]):
        self.batches, self.seconds = batches, 0.0

    def __iter__(self) -> WaitClock:
        return self

    def __next__(self) -> dict:
        start = time.perf_counter()
        try:
            return next(self.batches)
        finally:
            self.seconds += time.perf_counter() - start

    def close(self) -> None:
        self.batches.close()  # ends the DataLoader iterator, and with it its worker process


def tokenizer_config(args, output_dir: Path, settings: dict) -> TrainTokenizerConfig:
    """The --config file's run with the benchmark's data and output, the GAN on from step 0, and `settings`."""
    base = TrainTokenizerConfig.upgrade_settings(read_config_file(args.config))
    base = merge_settings(base, {
        "data": {"dataset": "fashion-mnist", "split": "train", "resolution": 32, "resize_mode": "pad",
                 "data_dir": args.data_dir, "max_images": args.max_images},
        "output_dir": str(output_dir), "num_workers": args.num_workers, "progress": False,
        "loss": {"disc_start_step": 0}, **({"batch_size": args.batch_size} if args.batch_size else {})})
    return config_from_dict(TrainTokenizerConfig, merge_settings(base, settings))


def tokenizer_trainer(args, output_dir: Path, variant: Variant) -> tuple[TokenizerTrainer, WaitClock]:
    """A trainer as pipelines.train_tokenizer builds it, and its batches as TokenizerTrainer.train() starts them."""
    config = tokenizer_config(args, output_dir, variant.settings)
    with adamw_flavour(variant.adamw):
        run = TrainingRun(config, TokenizerTrainer.curves, project_name="tokenizer",
                          markers=TokenizerTrainer.curve_markers(config))
        trainer = TokenizerTrainer(config, run)
    order = run.batch_order(len(trainer.dataset), config.batch_size, "images")
    trainer.batch_iter = ResumableBatches(trainer.dataset, order, collate_images, config.num_workers)
    unwrap = trainer.accelerator.unwrap_model
    discriminator = unwrap(trainer.discriminator) if trainer.discriminator is not None else None
    if variant.channels_last:
        for module in (trainer.raw_model, discriminator, trainer.loss_fn.perceptual):
            if module is not None:
                module.to(memory_format=torch.channels_last)
        next_images = trainer._next_images
        trainer._next_images = lambda batches: next_images(batches).contiguous(memory_format=torch.channels_last)
    if variant.compile:
        compile_in_place(trainer.raw_model, discriminator, trainer.loss_fn.perceptual)
    trainer.model.train()
    return trainer, WaitClock(iter(trainer.batch_iter))


def tokenizer_step(trainer: TokenizerTrainer, batches: WaitClock) -> dict:
    """One optimiser step, counted as TokenizerTrainer.train() counts it (the GAN ramp reads the step)."""
    logs = trainer.train_step(batches)
    trainer.progress.step += 1
    return logs


def eval_psnr(trainer: TokenizerTrainer, count: int, channels_last: bool) -> float:
    """PSNR of the first `count` training images through encode → decode (plain methods: not the compiled
    forward, so a compiled variant is not compiled again for eval mode)."""
    model = trainer.raw_model
    images = torch.stack([trainer.dataset[i]["image"] for i in range(count)]).to(trainer.accelerator.device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    model.eval()
    try:
        with torch.no_grad(), trainer.accelerator.autocast():
            reconstruction = model.decode(model.encode(images))
    finally:
        model.train()
    return round(_batch_psnr(images, reconstruction), 3)


def measure_tokenizer(args, workdir: Path, name: str, variant: Variant,
                      extra: Callable[[TokenizerTrainer, WaitClock], dict] | None = None) -> dict:
    """s/step of one variant, its data wait per step, first timed loss and PSNR after; `extra` measures more on
    the same trainer afterwards (the breakdown, the profile)."""
    trainer, batches = tokenizer_trainer(args, workdir / f"tokenizer-{name}", variant)
    try:
        timed(lambda: tokenizer_step(trainer, batches), args.warmup)
        waited = batches.seconds
        seconds, logs = timed(lambda: tokenizer_step(trainer, batches), args.tokenizer_steps)
        result = {**summary(seconds),
                  "data_wait_s_per_step": round((batches.seconds - waited) / len(seconds), 4),
                  "first_timed_loss": round(logs[0]["loss"], 6), "last_train_psnr": round(logs[-1]["psnr"], 3),
                  "eval_psnr": eval_psnr(trainer, args.eval_images, variant.channels_last)}
        if extra is not None:
            result.update(extra(trainer, batches))
        return result
    finally:
        batches.close()


def data_loading(trainer: TokenizerTrainer, count: int) -> dict:
    """s/batch of fresh iterators over the run's order: back-to-back from the config's workers (after the
    first batch, which starts the worker), and decoded in this process (num_workers 0)."""
    result = {}
    for label, workers in (("worker", trainer.config.num_workers), ("in_process", 0)):
        order = trainer.run.batch_order(len(trainer.dataset), trainer.config.batch_size, "images")
        batches = iter(ResumableBatches(trainer.dataset, order, collate_images, workers))
        try:
            first, _ = timed(lambda: trainer._next_images(batches), 1)
            seconds, _ = timed(lambda: trainer._next_images(batches), count)
        finally:
            batches.close()
        result[f"{label}_s_per_batch"] = round(statistics.median(seconds), 4)
        result[f"{label}_first_batch_s"] = round(first[0], 4)
    return result


def optimizer_alone(trainer: TokenizerTrainer, batches: WaitClock, repeats: int) -> dict:
    """`opt.step()` of the generator's optimiser after one generator backward: the trainer's AdamW, then
    foreach and fused AdamW over the same parameters and gradients (the first step, which makes the state, is
    not timed)."""
    acc, opt = trainer.accelerator, trainer.opt_g
    generator_step(acc, trainer.model, trainer.discriminator, trainer.loss_fn, trainer._next_images(batches),
                   trainer.progress.step, 1.0)
    params = [p for group in opt.param_groups for p in group["params"]]
    hyper = {k: opt.optimizer.defaults[k] for k in ("lr", "betas", "eps", "weight_decay")}
    optimizers = {"trainer": opt}
    optimizers.update({f"adamw_{f}": torch.optim.AdamW(params, **hyper, **{f: True}) for f in ("foreach", "fused")})
    result = {"generator_parameters": sum(p.numel() for p in params),
              "trainer_flavour": {k: opt.optimizer.defaults.get(k) for k in ("foreach", "fused")}}
    for label, optimizer in optimizers.items():
        try:
            optimizer.step()
            seconds, _ = timed(optimizer.step, repeats)
            result[f"{label}_s"] = round(statistics.median(seconds), 5)
        except Exception as error:  # noqa: BLE001 (a flavour this build lacks is a result, not a crash)
            result[f"{label}_s"] = failure(error)
    opt.zero_grad(set_to_none=True)
    return result


def op_group(event) -> str:
    """The group of one profiler event's self time, by its name and the record_function scopes around it."""
    scopes = []
    parent = event
    while parent is not None:
        scopes.append(parent.name)
        parent = parent.cpu_parent
    if any(s.startswith("Optimizer.") for s in scopes) or any(k in event.name.lower() for k in ("adam", "_foreach")):
        return "optimizer"
    if any(s.startswith("enumerate(DataLoader)") for s in scopes):
        return "data_wait"
    # "aten::convolution_backward" → "convolution_backward"; "...evaluate_function: MmBackward0" → "mmbackward0"
    base = event.name.lower().rsplit("::", 1)[-1].rsplit(": ", 1)[-1].strip()
    if "conv" in base:
        return "convolution"
    if base.startswith(MATMUL_PREFIXES):
        return "matmul"
    return "other"


def op_shares(trainer: TokenizerTrainer, batches: WaitClock, steps: int, top: int = 12) -> dict:
    """torch.profiler over `steps` full steps: share of self CPU time per op group, and the top ops."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            tokenizer_step(trainer, batches)
    groups: dict[str, float] = {}
    by_name: dict[str, float] = {}
    for event in prof.events():
        us, group = event.self_cpu_time_total, op_group(event)
        groups[group] = groups.get(group, 0.0) + us
        by_name[event.name] = by_name.get(event.name, 0.0) + us
    total = sum(groups.values()) or 1.0
    return {"profiled_steps": steps, "self_cpu_s_per_step": round(total / 1e6 / steps, 4),
            "shares": {k: round(v / total, 4) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top_ops_s_per_step": {k: round(v / 1e6 / steps, 4)
                                   for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:top]}}


def tokenizer_part(args, workdir: Path) -> dict:
    names = [n for n in TOKENIZER_VARIANTS if n != "compile" or args.compile]
    variants: dict[str, dict | str] = {}
    breakdown: dict = {}

    def baseline_extra(trainer: TokenizerTrainer, batches: WaitClock) -> dict:
        # After the timed steps, on the same trainer: the parts that need its optimiser, data and models.
        breakdown["data_loading"] = data_loading(trainer, args.data_batches)
        breakdown["optimizer_step"] = optimizer_alone(trainer, batches, args.optimizer_repeats)
        breakdown["op_share"] = op_shares(trainer, batches, args.profile_steps) if args.profile_steps else None
        return {}

    for name in names:
        print(f"tokenizer: {name}", file=sys.stderr)
        try:
            variants[name] = measure_tokenizer(args, workdir, name, TOKENIZER_VARIANTS[name],
                                               baseline_extra if name == "baseline" else None)
        except Exception as error:  # noqa: BLE001 (one failing option must not lose the others' numbers)
            variants[name] = failure(error)
        released()
    ablation = {}
    for name, variant in TOKENIZER_ABLATIONS.items():
        print(f"tokenizer: {name}", file=sys.stderr)
        try:
            ablation[name] = measure_tokenizer(args, workdir, name, variant)
        except Exception as error:  # noqa: BLE001
            ablation[name] = failure(error)
        released()
    return {"config": str(args.config), "s_per_step": s_per_step(variants),
            "speedup_vs_baseline": speedups(variants), "variants": variants,
            "ablation": ablation_summary(variants.get("baseline"), ablation, breakdown),
            "op_share": breakdown.get("op_share")}


def ablation_summary(baseline: dict | str | None, ablation: dict, breakdown: dict) -> dict:
    """The full step's parts in seconds and as shares of it: what removing each saved, the data wait, the
    optimiser step."""
    result = {"full_step_s": baseline["s_per_step"] if isinstance(baseline, dict) else None, **ablation,
              "data_loading": breakdown.get("data_loading"), "optimizer_step": breakdown.get("optimizer_step")}
    if not isinstance(baseline, dict):
        return result
    full = baseline["s_per_step"]
    shares = {"data_wait": round(baseline["data_wait_s_per_step"] / full, 4)}
    for name, part in (("without_perceptual", "perceptual"), ("without_gan", "gan")):
        if isinstance(ablation.get(name), dict):
            shares[part] = round((full - ablation[name]["s_per_step"]) / full, 4)
    optimizer = (breakdown.get("optimizer_step") or {}).get("trainer_s")
    if isinstance(optimizer, float):
        shares["generator_optimizer"] = round(optimizer / full, 4)
    result["share_of_full_step"] = shares
    return result


def s_per_step(variants: dict) -> dict:
    return {k: v["s_per_step"] if isinstance(v, dict) else None for k, v in variants.items()}


def speedups(variants: dict) -> dict:
    base = variants.get("baseline")
    if not isinstance(base, dict):
        return {}
    return {k: round(base["s_per_step"] / v["s_per_step"], 3) for k, v in variants.items() if isinstance(v, dict)}


# --- 2. prior ---------------------------------------------------------------------------------------------


def write_codes(directory: Path, count: int, seed: int = 0) -> Path:
    """A codes folder of `count` random 16x16 grids of 256 codes with 10 classes, through the index-file writer."""
    rng = np.random.default_rng(seed)
    writer = CodesWriter(directory, {
        "codebook_size": CODEBOOK_SIZE, "grid_shapes": [list(GRID)], "shard_size": 1024, "num_inputs": count,
        "has_labels": True, "flipped": False, "tokenizer_fingerprint": "0" * 64})
    writer.start()
    codes = rng.integers(0, CODEBOOK_SIZE, (count, *GRID))
    labels = rng.integers(0, NUM_CLASSES, count)
    for index in range(writer.num_shards):
        start, stop = writer.shard_range(index)
        writer.write_shard(index, codes[start:stop], labels[start:stop], None, skipped=[])
    writer.write_manifest({"num_classes": NUM_CLASSES, "class_names": [f"class {i}" for i in range(NUM_CLASSES)]})
    return directory


def prior_trainer(args, codes: Path, output_dir: Path, variant: Variant) -> PriorTrainer:
    """A trainer as pipelines.train_prior builds it, from the small-32px preset with `variant.settings`."""
    config = config_from_preset(TrainPriorConfig, PRIOR_PRESETS, "small-32px", variant.settings, {
        "codes_dir": str(codes), "output_dir": str(output_dir), "progress": False,
        **({"batch_size": args.batch_size} if args.batch_size else {})})
    with adamw_flavour(variant.adamw):
        trainer = PriorTrainer(config, TrainingRun(config, PriorTrainer.curves, project_name="gpt prior"))
    if variant.compile:
        compile_in_place(trainer.raw_model)
    trainer.model.train()
    return trainer


def prior_step(trainer: PriorTrainer) -> dict | None:
    logs = trainer.train_step()
    trainer.state["step"] += 1
    return logs


def measure_prior(args, codes: Path, workdir: Path, name: str, variant: Variant) -> dict:
    trainer = prior_trainer(args, codes, workdir / f"prior-{name}", variant)
    timed(lambda: prior_step(trainer), args.warmup)
    seconds, logs = timed(lambda: prior_step(trainer), args.prior_steps)
    tokens = trainer.config.batch_size * GRID[0] * GRID[1]
    result = summary(seconds)
    # A step with a non-finite loss is skipped by the trainer and logs None.
    result.update(tokens_per_s=round(tokens / result["s_per_step"], 1),
                  first_timed_loss=round(logs[0]["loss"], 6) if logs[0] else None,
                  last_timed_loss=round(logs[-1]["loss"], 6) if logs[-1] else None)
    return result


def prior_part(args, workdir: Path) -> dict:
    codes = write_codes(workdir / "codes", args.codes_items)
    variants: dict[str, dict | str] = {}
    for name in (n for n in PRIOR_VARIANTS if n != "compile" or args.compile):
        print(f"prior: {name}", file=sys.stderr)
        try:
            variants[name] = measure_prior(args, codes, workdir, name, PRIOR_VARIANTS[name])
        except Exception as error:  # noqa: BLE001
            variants[name] = failure(error)
        released()
    return {"codes": {"items": args.codes_items, "grid": list(GRID), "codebook_size": CODEBOOK_SIZE,
                      "num_classes": NUM_CLASSES},
            "s_per_step": s_per_step(variants), "speedup_vs_baseline": speedups(variants),
            "tokens_per_s": {k: v["tokens_per_s"] if isinstance(v, dict) else None for k, v in variants.items()},
            "variants": variants}


# --- main -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="tokenizer,prior", help="comma-separated subset of tokenizer,prior")
    parser.add_argument("--config", type=Path, default=CONFIGS / "tokenizer-fmnist-grid16.json",
                        help="tokenizer training config (JSON)")
    parser.add_argument("--data_dir", default=None, help="Fashion-MNIST IDX files (default: the Debian package's)")
    parser.add_argument("--max_images", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="override both stages' batch (default: the config's and the preset's, 32)")
    parser.add_argument("--num_workers", type=int, default=1, help="tokenizer DataLoader workers")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each variant's timed ones")
    parser.add_argument("--tokenizer_steps", type=int, default=8, help="timed tokenizer steps per variant")
    parser.add_argument("--prior_steps", type=int, default=8, help="timed prior steps per variant")
    parser.add_argument("--profile_steps", type=int, default=2, help="profiled tokenizer steps (0: no profile)")
    parser.add_argument("--data_batches", type=int, default=8, help="batches timed for data loading alone")
    parser.add_argument("--optimizer_repeats", type=int, default=5, help="timed opt.step() calls per optimiser")
    parser.add_argument("--eval_images", type=int, default=64, help="images of the tokenizer's PSNR after its steps")
    parser.add_argument("--codes_items", type=int, default=4096, help="random grids in the prior's codes folder")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile variants (compiling on a CPU takes minutes)")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts <= {"tokenizer", "prior"}:
        parser.error(f"--parts {args.parts}: expected a subset of tokenizer,prior")

    result: dict = {"setup": {**cpu_setup(), "warmup": args.warmup, "tokenizer_steps": args.tokenizer_steps,
                              "prior_steps": args.prior_steps, "batch_size": args.batch_size,
                              "num_workers": args.num_workers, "statistic": "median s/step of the timed steps"}}
    # The stages' own lines go to stderr: stdout stays one JSON object. The scheduler-order warning is the
    # benign one pipelines.training silences too (accelerate wraps optimizer.step).
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        if "tokenizer" in parts:
            result["tokenizer"] = tokenizer_part(args, Path(tmp))
        if "prior" in parts:
            result["prior"] = prior_part(args, Path(tmp))
    emit_json(result, args.output_json)
    return result


if __name__ == "__main__":
    main()
