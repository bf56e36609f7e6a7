#!/usr/bin/env python
"""Benchmark: the whole class-conditional flow on Fashion-MNIST at a CPU budget, under the quality protocol.

Trains a tokenizer with the default recipe (the small-32px preset) for --tokenizer_steps, tokenizes all 60,000
training images, trains a class-conditional GPT prior with the default prior recipe for --prior_steps, then
generates --num_images samples (default 2,000, labels cycling through the ten classes) without and with
classifier-free guidance and measures FID, KID (mean ± std) and precision/recall against as many test images,
with both floors beside them: as many training images against the same reference, and the tokenizer's
reconstructions of the reference (its rFID). The issue's aim is a generation FID within 1.5x of that rFID from
at most an hour of training; the result says how far off it is (`fid_over_rfid`, `train_s`).

The stages are bench_table.py's (its "f4-gpt-small" recipe at these step counts): each reuses a stage an
earlier run finished in --output_dir, or resumes one it left midway; the pipeline is saved to
<output_dir>/pipeline for benchmarks/bench_generation.py's sweep. Writes <output_dir>/samples.png (a row of
samples per class) and <output_dir>/results.json; prints the JSON. Emoji: benchmarks/bench_demo.py.

    python benchmarks/bench_pipeline.py --output_dir outputs/pipeline-fmnist
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from pathlib import Path

import torch

from bench_table import RECIPES
from bench_table import train as train_recipe
from figures import save_labelled_rows
from pipelines.cli import emit_json
from pipelines import ImageGenerationPipeline
from pipelines.evaluation import DEFAULT_NUM_IMAGES, evaluate_generation
from prior import GPTPrior
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig
from tokenizer.training import DISC_START_FRACTION


def train(args, output: Path) -> tuple[ImageGenerationPipeline, dict]:
    """The three stages of bench_table's "f4-gpt-small" recipe at this run's step counts; seconds per stage."""
    base = RECIPES["f4-gpt-small"]
    recipe = dataclasses.replace(
        base, tokenizer={**base.tokenizer, "max_steps": args.tokenizer_steps,
                         "loss": {"disc_start_step": int(DISC_START_FRACTION * args.tokenizer_steps)}},
        prior={**base.prior, "max_steps": args.prior_steps})
    clock = train_recipe(recipe, output, args)
    pipe = ImageGenerationPipeline(VQGAN.from_pretrained(output / "tokenizer"), GPTPrior.from_pretrained(output / "prior"))
    pipe.save_pretrained(output / "pipeline")
    return pipe, {k: v for k, v in clock.record.items() if k.endswith("_s")}


@torch.no_grad()
def images_per_s(pipe: ImageGenerationPipeline, count: int, **settings) -> float:
    labels = pipe.cycled_class_labels(count)
    started = time.perf_counter()
    pipe(count, class_labels=labels, generator=torch.Generator().manual_seed(1), output_type="pt", progress=False,
         **settings)
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
    parser.set_defaults(checkpoint_every=None)  # bench_table's stages: the prior's checkpoints at max_steps / 4
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
    emit_json(result, output / "results.json")
    return result


if __name__ == "__main__":
    main()
