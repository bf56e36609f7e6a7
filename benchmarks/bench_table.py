#!/usr/bin/env python
"""Benchmark: Tessera's row in a published table. Whole recipes on Fashion-MNIST (tokenizer, tokenizing the
60,000 training images, class-conditional prior) under the quality protocol, against Dai & Wipf (ICLR 2019),
Table 1: VAE 60.0, 2-Stage VAE 29.3, WGAN (after a 100-setting search) 21.5.

Each recipe is plain data (RECIPES below): a tokenizer training config, a prior training config and the sampling
settings to evaluate. Each of its sampling settings gives one row of <output_dir>/results.json:

    recipe, fid, kid_mean, kid_std, precision, recall, num_samples, train_seconds, rfid,
    floor {real: FID of as many training images, tokenizer: the tokenizer's reconstructions (= rfid)}

train_seconds counts the three training stages (tokenizer, tokenizing, prior), not evaluation. --curve_steps
also evaluates the prior's checkpoints at those steps (the FID a shorter prior run buys; its train_seconds is
the tokenizer's and tokenizing's time plus the prior's time up to that step).

Stages are kept: a finished stage (its time recorded in <output_dir>/<recipe>/seconds.json) is reused rather
than trained again; a stage killed midway resumes from its checkpoint when run again, and its row then carries
"resumed": true (its train_seconds misses the time lost before the kill).

    python benchmarks/bench_table.py --recipes f2-gpt-small --output_dir outputs/bench-table
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from safetensors.torch import load_file

from figures import plot_fid_against_minutes
from pipelines import ImageGenerationPipeline, TokenizeDatasetConfig, tokenize_dataset
from pipelines.cli import comma_choices, config_from_dict, config_from_preset, merge_settings, read_config_file
from pipelines.decoder import load_decoder
from pipelines.evaluation import DEFAULT_NUM_IMAGES, evaluate_generation
from pipelines.training import train_prior, train_tokenizer
from pipelines.training_run import find_checkpoint, read_metrics
from prior import GPTPrior
from prior.presets import PRIOR_PRESETS
from prior.training import TrainPriorConfig
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig
from tokenizer.training import TrainTokenizerConfig

CONFIGS = Path(__file__).parent / "configs"
PAPER_ROWS = {"VAE (Dai & Wipf 2019)": 60.0, "2-Stage VAE (Dai & Wipf 2019)": 29.3,
              "WGAN, 100-setting search (Lucic et al. 2018)": 21.5}


@dataclass
class Recipe:
    """One whole flow. `tokenizer`: a JSON config under benchmarks/configs and settings laid over it;
    `prior`: settings over the small-32px prior preset; `samplings`: name → pipeline call settings."""

    tokenizer_config: str
    tokenizer: dict
    prior: dict
    samplings: dict[str, dict] = field(default_factory=lambda: {"plain": {}})


RECIPES: dict[str, Recipe] = {
    # The 8x8 grid of the small-32px preset: the earlier pipeline of docs/benchmarks.md (FID 43.7).
    "f4-gpt-small": Recipe(
        "tokenizer-fmnist-grid8.json", {"max_steps": 800, "loss": {"disc_start_step": 480}},
        {"max_steps": 3000},
        {"plain": {}, "guidance-2": {"guidance_scale": 2.0}}),
    # A 16x16 grid (rFID 15.0 after 800 steps, docs/fashion-mnist-table.md); the prior reads 256 codes, so it
    # trains in bf16 autocast (1.35x faster per step on this CPU's avx512_bf16).
    "f2-gpt-small": Recipe(
        "tokenizer-fmnist-grid16.json", {"max_steps": 800, "loss": {"disc_start_step": 480}},
        {"max_steps": 3000, "mixed_precision": "bf16"},
        {"plain": {}, "guidance-2": {"guidance_scale": 2.0}}),
    # f2-gpt-small with the prior given the rest of the two hours: 3,400 steps (val bits/token was still falling
    # at 3,000), sampled at guidance 2, the scale that scored best on f2-gpt-small.
    "f2-gpt-small-long": Recipe(
        "tokenizer-fmnist-grid16.json", {"max_steps": 800, "loss": {"disc_start_step": 480}},
        {"max_steps": 3400, "mixed_precision": "bf16"},
        {"guidance-2": {"guidance_scale": 2.0}}),
}
# What makes two tokenizer runs the same training (the rest is where it writes and how it reports).
SAME_TRAINING = ("data", "model", "loss", "discriminator", "max_steps", "batch_size", "learning_rate", "adam_betas",
                 "weight_decay", "warmup_steps", "lr_schedule", "mixed_precision", "seed")


def fmnist(split: str, data_dir: str | None, max_images: int | None = None) -> dict:
    return {"dataset": "fashion-mnist", "split": split, "resolution": 32, "resize_mode": "pad", "data_dir": data_dir,
            "max_images": max_images}


class StageClock:
    """Seconds per finished stage in <run>/seconds.json, so a rerun reuses finished stages and their times."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "seconds.json"
        self.record = json.loads(self.path.read_text()) if self.path.is_file() else {"resumed": []}

    def done(self, stage: str) -> bool:
        return f"{stage}_s" in self.record

    def run(self, stage: str, work, resumable: Path | None = None) -> None:
        if self.done(stage):
            return
        if resumable is not None and find_checkpoint(resumable, "latest") is not None:
            self.record["resumed"].append(stage)
        started = time.perf_counter()
        work()
        self.record[f"{stage}_s"] = round(time.perf_counter() - started, 1)
        self.path.write_text(json.dumps(self.record, indent=2) + "\n")

    @property
    def train_seconds(self) -> float:
        return round(sum(v for k, v in self.record.items() if k.endswith("_s")), 1)


def tokenizer_config(recipe: Recipe, run_dir: Path, args) -> TrainTokenizerConfig:
    settings = TrainTokenizerConfig.upgrade_settings(read_config_file(CONFIGS / recipe.tokenizer_config))
    steps = recipe.tokenizer["max_steps"]
    settings = merge_settings(settings, recipe.tokenizer)
    settings = merge_settings(settings, {
        "data": fmnist("train", args.data_dir, args.max_train_images), "output_dir": str(run_dir / "tokenizer"),
        "num_workers": 1, "log_every": 25, "image_every": max(steps // 4, 1), "checkpoint_every": max(steps // 4, 1),
        "resume_from_checkpoint": "latest", "progress": not args.no_progress})
    return config_from_dict(TrainTokenizerConfig, settings)


def check_same_tokenizer(config: TrainTokenizerConfig, folder: Path) -> None:
    """A finished tokenizer folder is reused only when its train_config.json is this recipe's training."""
    saved = config_from_dict(TrainTokenizerConfig,
                             TrainTokenizerConfig.upgrade_settings(read_config_file(folder / "train_config.json")))
    saved, wanted = (json.loads(json.dumps(dataclasses.asdict(c))) for c in (saved, config))
    different = [k for k in SAME_TRAINING if saved.get(k) != wanted.get(k)]
    if different:
        raise ValueError(f"{folder} was trained with other settings ({', '.join(different)}) than this recipe: "
                         "delete the recipe's folder to train it anew")


def train(recipe: Recipe, run_dir: Path, args) -> StageClock:
    """The three stages, each skipped when seconds.json says it finished."""
    run_dir.mkdir(parents=True, exist_ok=True)
    clock = StageClock(run_dir)
    config = tokenizer_config(recipe, run_dir, args)
    if clock.done("tokenizer"):
        check_same_tokenizer(config, run_dir / "tokenizer")
    clock.run("tokenizer", lambda: train_tokenizer(config), resumable=run_dir / "tokenizer")
    tokenizer_dir, codes = run_dir / "tokenizer", run_dir / "codes"
    # Resumes by shard, and checks a finished folder was made by this tokenizer.
    clock.run("tokenize", lambda: tokenize_dataset(tokenizer_dir, TokenizeDatasetConfig(
        dataset="fashion-mnist", split="train", resize_mode="pad", data_dir=args.data_dir,
        max_images=args.max_train_images, output_dir=str(codes), num_workers=1, progress=not args.no_progress)))
    steps = recipe.prior["max_steps"]
    prior_config = config_from_preset(TrainPriorConfig, PRIOR_PRESETS, "small-32px", recipe.prior, {
        "codes_dir": str(codes), "output_dir": str(run_dir / "prior"), "eval_every": max(steps // 10, 1),
        "sample_every": max(steps // 4, 1), "checkpoint_every": args.checkpoint_every or max(steps // 4, 1),
        "checkpoints_total_limit": None, "resume_from_checkpoint": "latest", "progress": not args.no_progress})
    clock.run("prior", lambda: train_prior(prior_config, load_decoder(tokenizer_dir)), resumable=run_dir / "prior")
    return clock


def prior_at_step(prior_dir: Path, step: int) -> GPTPrior:
    """The prior as its checkpoint at `step` held it (accelerate's model.safetensors in the checkpoint)."""
    prior = GPTPrior.from_pretrained(prior_dir)
    weights = prior_dir / "checkpoints" / f"checkpoint_{step}" / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no checkpoint at step {step}; --curve_steps must be checkpoint steps")
    prior.load_state_dict(load_file(weights), strict=True)
    return prior


def prior_seconds_at(prior_dir: Path, step: int) -> float:
    """The prior's logged wall time at `step` (metrics.jsonl's elapsed_s; a log step, as checkpoint steps are)."""
    records = [r for r in read_metrics(prior_dir) if r.get("step") == step and "elapsed_s" in r]
    if not records:
        raise ValueError(f"{prior_dir}/metrics.jsonl has no elapsed_s at step {step}: --curve_steps must be logged "
                         "checkpoint steps of a run that logs elapsed_s")
    return records[-1]["elapsed_s"]


def add_rows(rows: list[dict], name: str, recipe: Recipe, pipe: ImageGenerationPipeline, train_seconds: float,
             args, extra: dict | None = None) -> None:
    """One row per sampling setting of `recipe`, appended to `rows` and written out as each is measured (a
    stopped run keeps what it measured)."""
    test = ImageDataConfig(**{**fmnist("test", args.data_dir), "max_images": None})
    for sampling_name, settings in recipe.samplings.items():
        metrics = evaluate_generation(pipe, test, args.num_images, class_labels="uniform", floor_split="train",
                                      cache_dir=args.cache_dir, progress=not args.no_progress, **settings)
        rows.append({
            "recipe": f"{name}/{sampling_name}", "fid": metrics["fid"], "kid_mean": metrics["kid_mean"],
            "kid_std": metrics["kid_std"], "precision": metrics["precision"], "recall": metrics["recall"],
            "num_samples": metrics["num_images"], "train_seconds": train_seconds,
            "rfid": metrics["floor"]["tokenizer"]["fid"],
            "floor": {"real": metrics["floor"]["real"]["fid"], "tokenizer": metrics["floor"]["tokenizer"]["fid"]},
            "sampling": settings, **(extra or {})})
        print(json.dumps(rows[-1]), file=sys.stderr)
        write_rows(args, rows)


def write_rows(args, rows: list[dict]) -> None:
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot_fid_against_minutes(rows, PAPER_ROWS, output / "fid-minutes.png")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=comma_choices(RECIPES), default=["f2-gpt-small"],
                        help=f"comma-separated, from {sorted(RECIPES)}")
    parser.add_argument("--num_images", type=int, default=DEFAULT_NUM_IMAGES)
    parser.add_argument("--curve_steps", default="", help="comma-separated prior checkpoint steps to evaluate too")
    parser.add_argument("--checkpoint_every", type=int, default=None, help="prior checkpoints (default: max_steps/4)")
    parser.add_argument("--data_dir", default=None, help="Fashion-MNIST IDX files (default: the Debian package's)")
    parser.add_argument("--max_train_images", type=int, default=None, help="the first N training images (smoke runs)")
    parser.add_argument("--cache_dir", default=None, help="Inception feature cache (default: the user cache)")
    parser.add_argument("--output_dir", default="outputs/bench-table")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    output = Path(args.output_dir)
    curve = [int(s) for s in args.curve_steps.split(",") if s]
    rows = []
    # The stages' own lines go to stderr: stdout stays one JSON document.
    with contextlib.redirect_stdout(sys.stderr):
        for name in args.recipes:
            recipe, run_dir = RECIPES[name], output / name
            clock = train(recipe, run_dir, args)
            tokenizer = VQGAN.from_pretrained(run_dir / "tokenizer")
            resumed = {"resumed": clock.record["resumed"]} if clock.record["resumed"] else {}
            pipe = ImageGenerationPipeline(tokenizer, GPTPrior.from_pretrained(run_dir / "prior"))
            pipe.save_pretrained(run_dir / "pipeline")  # for bench_generation.py's sampling sweeps
            add_rows(rows, name, recipe, pipe, clock.train_seconds, args,
                     {"prior_steps": recipe.prior["max_steps"], **resumed})
            for step in curve:
                before = clock.train_seconds - clock.record["prior_s"]
                prior_s = prior_seconds_at(run_dir / "prior", step)
                pipe = ImageGenerationPipeline(tokenizer, prior_at_step(run_dir / "prior", step))
                add_rows(rows, name, recipe, pipe, round(before + prior_s, 1), args, {"prior_steps": step, **resumed})
    write_rows(args, rows)
    print(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
