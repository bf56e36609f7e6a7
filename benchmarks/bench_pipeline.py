#!/usr/bin/env python
"""Benchmark: the whole class-conditional flow on Fashion-MNIST at a CPU budget, under the quality protocol.

Trains a tokenizer with the default recipe (the small-32px preset) for --tokenizer_steps, tokenizes all 60,000
training images, trains a class-conditional GPT prior with the default prior recipe for --prior_steps, then
generates --num_images samples (default 2,000, labels cycling through the ten classes) without and with
classifier-free guidance and measures FID, KID (mean ± std) and precision/recall against as many test images,
with both floors beside them: as many training images against the same reference, and the tokenizer's
reconstructions of the reference (its rFID). The issue's aim is a generation FID within 1.5x of that rFID from
at most an hour of training; the result says how far off it is (`fid_over_rfid`, `train_s`).

Each stage continues (or reuses) what an earlier run left in --output_dir; the pipeline is saved to
<output_dir>/pipeline for benchmarks/bench_generation.py's sweep. Writes <output_dir>/samples.png (a row of
samples per class) and <output_dir>/results.json; prints the JSON. Emoji: benchmarks/bench_demo.py.

    python benchmarks/bench_pipeline.py --output_dir outputs/pipeline-fmnist
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

from pipelines import ImageGenerationPipeline, TokenizeDatasetConfig, tokenize_dataset
from pipelines.cli import config_from_preset
from pipelines.decoder import load_decoder
from pipelines.evaluation import DEFAULT_NUM_IMAGES, evaluate_generation
from figures import save_labelled_rows
from pipelines.training import train_prior, train_tokenizer
from prior import GPTPrior
from prior.presets import PRIOR_PRESETS
from prior.training import TrainPriorConfig
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig
from tokenizer.training.presets import TOKENIZER_PRESETS
from tokenizer.training import TrainTokenizerConfig


def train(args, output: Path) -> tuple[ImageGenerationPipeline, dict]:
    """The three stages with the default recipes; seconds per stage."""
    data = {"dataset": "fashion-mnist", "resolution": 32, "resize_mode": "pad", "data_dir": args.data_dir,
            "max_images": args.max_train_images}
    seconds, started = {}, time.perf_counter()
    tokenizer_dir = train_tokenizer(config_from_preset(TrainTokenizerConfig, TOKENIZER_PRESETS, "small-32px", {
        "output_dir": str(output / "tokenizer"), "data": {**data, "split": "train"}, "max_steps": args.tokenizer_steps,
        "num_workers": 1, "log_every": 25, "image_every": max(args.tokenizer_steps // 4, 1),
        "checkpoint_every": max(args.tokenizer_steps // 4, 1), "resume_from_checkpoint": "latest",
        "progress": not args.no_progress}))
    seconds["tokenizer_s"] = time.perf_counter() - started
    codes = output / "codes"
    # Resumes by shard, and reuses a finished folder, checking it was made by this tokenizer.
    tokenize_dataset(tokenizer_dir, TokenizeDatasetConfig(
        dataset="fashion-mnist", split="train", resize_mode="pad", data_dir=args.data_dir,
        max_images=args.max_train_images, output_dir=str(codes), num_workers=1, progress=not args.no_progress))
    seconds["tokenize_s"] = time.perf_counter() - started - sum(seconds.values())
    prior_dir = train_prior(config_from_preset(TrainPriorConfig, PRIOR_PRESETS, "small-32px", {
        "codes_dir": str(codes), "output_dir": str(output / "prior"), "max_steps": args.prior_steps,
        "eval_every": max(args.prior_steps // 10, 1), "sample_every": max(args.prior_steps // 4, 1),
        "checkpoint_every": max(args.prior_steps // 4, 1), "resume_from_checkpoint": "latest",
        "progress": not args.no_progress}), load_decoder(tokenizer_dir))
    seconds["prior_s"] = time.perf_counter() - started - sum(seconds.values())
    pipe = ImageGenerationPipeline(VQGAN.from_pretrained(tokenizer_dir), GPTPrior.from_pretrained(prior_dir))
    pipe.save_pretrained(output / "pipeline")
    return pipe, {k: round(v, 1) for k, v in seconds.items()}


@torch.no_grad()
def images_per_s(pipe: ImageGenerationPipeline, count: int, **settings) -> float:
    labels = pipe.cycled_class_labels(count)
    started = time.perf_counter()
    pipe(count, class_labels=labels, generator=torch.Generator().manual_seed(1), output_type="pt", **settings)
    return count / (time.perf_counter() - started)


@torch.no_grad()
def samples_grid(pipe: ImageGenerationPipeline, path: Path, guidance_scale: float, per_class: int = 12) -> None:
    names = list(pipe.prior.config.class_names) or [str(c) for c in range(pipe.prior.config.num_classes)]
    rows = [pipe(per_class, class_labels=[c] * per_class, guidance_scale=guidance_scale, output_type="pt",
                 generator=torch.Generator().manual_seed(c)).images * 2 - 1 for c in range(len(names))]
    save_labelled_rows(rows, names, path, label_width=90)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer_steps", type=int, default=800)
    parser.add_argument("--prior_steps", type=int, default=3000)
    parser.add_argument("--guidance_scale", type=float, default=2.0, help="the guided setting beside plain sampling")
    parser.add_argument("--num_images", type=int, default=DEFAULT_NUM_IMAGES)
    parser.add_argument("--speed_images", type=int, default=128, help="images timed for images/s")
    parser.add_argument("--data_dir", default=None, help="Fashion-MNIST IDX files (default: the Debian package's)")
    parser.add_argument("--max_train_images", type=int, default=None, help="the first N training images (smoke runs)")
    parser.add_argument("--cache_dir", default=None, help="Inception feature cache (default: the user cache)")
    parser.add_argument("--output_dir", default="outputs/pipeline-fmnist")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    output = Path(args.output_dir)
    # The stages' own lines (tokenize summary, resume notes) go to stderr: stdout stays one JSON object.
    with contextlib.redirect_stdout(sys.stderr):
        pipe, seconds = train(args, output)
        test = ImageDataConfig(dataset="fashion-mnist", split="test", resolution=32, resize_mode="pad",
                               data_dir=args.data_dir)
        result = {"budget": {"tokenizer_steps": args.tokenizer_steps, "prior_steps": args.prior_steps, **seconds,
                             "train_s": round(sum(seconds.values()), 1)}}
        for scale in (1.0, args.guidance_scale):
            metrics = evaluate_generation(pipe, test, args.num_images, class_labels="uniform", guidance_scale=scale,
                                          floor_split="train", cache_dir=args.cache_dir, progress=not args.no_progress)
            metrics["fid_over_rfid"] = round(metrics["fid"] / metrics["floor"]["tokenizer"]["fid"], 3)
            metrics["images_per_s"] = images_per_s(pipe, args.speed_images, guidance_scale=scale)
            result[f"guidance_{scale:g}"] = metrics
        samples_grid(pipe, output / "samples.png", args.guidance_scale)
    text = json.dumps(result, indent=2)
    (output / "results.json").write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
