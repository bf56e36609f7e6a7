#!/usr/bin/env python
"""Benchmark: the one-level VQ-GAN, the two-level VQ-VAE-2 and the plain VAE on one data set at 32 px.

Reconstruction, at an equal tokenizer budget: each architecture's tokenizer trains --tokenizer_steps with the
default recipe (the small-32px preset with only `architecture` changed), and is measured on held-out images
(--eval_images, the whole split where smaller): PSNR, SSIM, LPIPS, rFID and rKID, and its rate in bits per image
(codes: cells × log2 of the codebook size, summed over levels; the VAE: its KL in bits).

Generation, at equal training time, under the protocol (--num_images samples, default 2,000, against as many
held-out images, the floors beside them):
  vqgan   tokenizer + tokenize + a GPT prior of --prior_steps. Its total training time T is the budget.
  vqvae2  tokenizer + tokenize + a top GPT prior and a bottom GPT prior (conditioned on the top grid); what is left
          of T after its tokenizer and tokenizing is split evenly between the two priors, each given the steps that
          fit. A 20-step trial gives a first step count; a 20-step run is mostly start-up, validation and sample
          grids, so when the prior's run then takes more than 10% more or less than its share, it is rerun from
          scratch at the step count its own seconds per step (overheads included) fit in the share. The rerun is
          the prior sampled; the first run's steps and seconds are kept beside it ("first_run").
  vae     no prior: a second VAE trained for the steps that fit in T at the rate of the first, sampled from N(0, I).
Class-conditional data sets (Fashion-MNIST) get class-conditional priors sampled with the classes cycled; the VAE
is unconditional. Sampling is plain (temperature 1, no top-k or guidance) for every architecture.

Every stage keeps its results in <output_dir>/<architecture>/ and is reused by a rerun, so an interrupted
benchmark continues where it stopped (a stage cut short resumes from its checkpoint; its time then counts only
the part after the resume: rerun it into a fresh folder for timings). Writes reconstructions.png (held-out images, then each architecture's
reconstructions), samples.png (a row of samples per architecture), results.json, and prints the JSON.

    python benchmarks/bench_architectures.py --dataset emoji --output_dir outputs/architectures-emoji
    python benchmarks/bench_architectures.py --dataset fashion-mnist --output_dir outputs/architectures-fmnist
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from pipelines import ImageGenerationPipeline, TokenizeDatasetConfig, tokenize_dataset
from pipelines.cli import comma_choices, config_from_preset, emit_json
from pipelines.decoder import load_decoder
from pipelines.evaluation import DEFAULT_NUM_IMAGES, evaluate_generation, evaluate_tokenizer
from figures import save_labelled_rows, save_reconstruction_rows
from pipelines.training import train_prior, train_tokenizer
from pipelines.training_run import read_metrics
from prior import GPTPrior
from prior.presets import PRIOR_PRESETS
from prior.training import TrainPriorConfig
from tokenizer import load_tokenizer
from tokenizer.data import ImageDataConfig, build_image_dataset
from tokenizer.training.presets import TOKENIZER_PRESETS
from tokenizer.training import TrainTokenizerConfig

ARCHITECTURES = ("vqgan", "vqvae2", "vae")
# How each data set is read: emoji are mirrored (images and codes), Fashion-MNIST is padded and has classes.
DATASETS = {
    "emoji": {"data": {"resize_mode": "crop"}, "flip": True},
    "fashion-mnist": {"data": {"resize_mode": "pad"}, "flip": False},
}
TRIAL_STEPS = 20  # the trial run that gives a prior's first step count
FIT_TOLERANCE = 0.1  # a prior run off its time share by more than this fraction is rerun at the measured rate


def timed(path: Path, work) -> dict:
    """Run `work()` (returning a dict) once and keep its result and seconds in `path`; read them back later."""
    if path.is_file():
        return json.loads(path.read_text())
    started = time.perf_counter()
    result = {**work(), "seconds": round(time.perf_counter() - started, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


class Flow:
    """One architecture's stages in <output_dir>/<architecture>/ on one data set."""

    def __init__(self, args, architecture: str):
        self.args, self.architecture = args, architecture
        self.root = Path(args.output_dir) / architecture
        self.settings = DATASETS[args.dataset]
        self.data = {"dataset": args.dataset, "resolution": 32, "data_dir": args.data_dir,
                     "max_images": args.max_train_images, **self.settings["data"]}

    def tokenizer(self, name: str, steps: int) -> dict:
        """Train the default recipe with this architecture for `steps` (kept in <root>/<name>)."""
        output = self.root / name
        config = config_from_preset(TrainTokenizerConfig, TOKENIZER_PRESETS, "small-32px", {
            "output_dir": str(output), "model": {"architecture": self.architecture},
            "data": {**self.data, "split": "train", "random_flip": self.settings["flip"]},
            "max_steps": steps, "warmup_steps": min(50, steps // 4), "num_workers": 1, "log_every": 10,
            "image_every": max(steps // 4, 1), "checkpoint_every": max(steps // 4, 1),
            "resume_from_checkpoint": "latest", "progress": not self.args.no_progress})

        def work() -> dict:
            torch.manual_seed(config.seed)
            train_tokenizer(config)
            return {"steps": steps, "s_per_step": 1 / read_metrics(output)[-1]["steps_per_s"]}

        return timed(self.root / f"{name}.json", work)

    def tokenize(self) -> dict:
        def work() -> dict:
            tokenize_dataset(self.root / "tokenizer", TokenizeDatasetConfig(
                **{k: v for k, v in self.data.items() if k != "resolution"}, split="train",
                output_dir=str(self.root / "codes"), flip=self.settings["flip"], num_workers=1,
                progress=not self.args.no_progress))
            return {}

        return timed(self.root / "tokenize.json", work)

    def prior(self, name: str, steps: int, level: str | None) -> dict:
        output = self.root / name
        config = config_from_preset(TrainPriorConfig, PRIOR_PRESETS, "small-32px", {
            "codes_dir": str(self.root / "codes"), "output_dir": str(output), "level": level,
            "include_flipped": self.settings["flip"], "max_steps": steps, "warmup_steps": min(100, steps // 4),
            "eval_every": max(steps // 5, 1), "sample_every": max(steps // 2, 1), "checkpoint_every": max(steps // 4, 1),
            "resume_from_checkpoint": "latest", "progress": not self.args.no_progress})
        def work() -> dict:
            torch.manual_seed(config.seed)
            # A top-level prior's sample grids cannot be decoded alone (they need bottom grids).
            train_prior(config, None if level == "top" else load_decoder(self.root / "tokenizer"))
            lines = read_metrics(output)
            val = next((l["val_bits_per_token"] for l in reversed(lines) if l.get("val_bits_per_token")), None)
            return {"steps": steps, "s_per_step": 1 / lines[-1]["steps_per_s"], "val_bits_per_token": val}

        return timed(self.root / f"{name}.json", work)

    def prior_steps_for(self, name: str, level: str, seconds: float) -> int:
        """The steps a prior at `level` runs in `seconds`, at the rate of a short trial run (deleted after)."""
        trial = self.prior(f"{name}-trial", TRIAL_STEPS, level)
        shutil.rmtree(self.root / f"{name}-trial", ignore_errors=True)
        return max(int(seconds / trial["s_per_step"]), 1)

    def prior_in(self, name: str, level: str, seconds: float) -> dict:
        """A prior at `level` trained for the steps that fill `seconds`: first at the trial's rate, then, when that
        run missed `seconds` by more than FIT_TOLERANCE, again from scratch at the rate it measured."""
        first_path = self.root / f"{name}-first.json"
        if not first_path.is_file():  # (found by a rerun after an interruption: the refit is what is left)
            result = self.prior(name, self.prior_steps_for(name, level, seconds), level)
            if abs(result["seconds"] - seconds) <= FIT_TOLERANCE * seconds:
                return result
            (self.root / f"{name}.json").rename(first_path)
            shutil.rmtree(self.root / name)
        first = json.loads(first_path.read_text())
        steps = max(int(first["steps"] * seconds / first["seconds"]), 1)
        return {**self.prior(name, steps, level), "first_run": first}


def train_all(args) -> dict:
    """Every architecture's stages; returns {architecture: {"stages": ..., "train_s": ..., "generator": dir}}."""
    flows = {arch: Flow(args, arch) for arch in args.architectures}
    stages: dict[str, dict] = {arch: {} for arch in flows}
    for arch, flow in flows.items():
        stages[arch]["tokenizer"] = flow.tokenizer("tokenizer", args.tokenizer_steps)
    budget = None
    if "vqgan" in flows:
        flow = flows["vqgan"]
        stages["vqgan"]["tokenize"] = flow.tokenize()
        stages["vqgan"]["prior"] = flow.prior("prior", args.prior_steps, None)
        budget = sum(stage["seconds"] for stage in stages["vqgan"].values())
    budget = args.budget_s or budget
    if budget is None:
        raise ValueError("the equal-time budget comes from the vqgan run: include vqgan, or give --budget_s")
    if "vqvae2" in flows:
        flow, done = flows["vqvae2"], stages["vqvae2"]
        done["tokenize"] = flow.tokenize()
        left = budget - done["tokenizer"]["seconds"] - done["tokenize"]["seconds"]
        for level in ("top", "bottom"):
            done[f"{level}_prior"] = flow.prior_in(f"{level}_prior", level, left / 2)
    if "vae" in flows:
        flow, first = flows["vae"], stages["vae"]["tokenizer"]
        startup = first["seconds"] - first["steps"] * first["s_per_step"]
        steps = max(int((budget - startup) / first["s_per_step"]), args.tokenizer_steps)
        stages["vae"]["equal_time_tokenizer"] = flow.tokenizer("equal_time_tokenizer", steps)
    return {"budget_s": round(budget, 1), "stages": stages}


def trained_pipeline(args, arch: str) -> ImageGenerationPipeline:
    root = Path(args.output_dir) / arch
    if arch == "vae":
        return ImageGenerationPipeline(load_tokenizer(root / "equal_time_tokenizer"))
    names = ["prior"] if arch == "vqgan" else ["top_prior", "bottom_prior"]
    return ImageGenerationPipeline(load_tokenizer(root / "tokenizer"), *[GPTPrior.from_pretrained(root / n) for n in names])


def evaluate(args, trained: dict, test: ImageDataConfig) -> dict:
    results = {}
    for arch in args.architectures:
        root = Path(args.output_dir) / arch
        reconstruction = timed(root / "reconstruction.json", lambda: evaluate_tokenizer(
            load_tokenizer(root / "tokenizer"), test, num_images=args.eval_images, cache_dir=args.cache_dir,
            progress=not args.no_progress))
        pipe = trained_pipeline(args, arch)
        generation = timed(root / "generation.json", lambda: evaluate_generation(
            pipe, test, args.num_images, class_labels=pipe.cycled_class_labels(args.num_images), cache_dir=args.cache_dir,
            progress=not args.no_progress))
        stages = trained["stages"][arch]
        # What the sampled pipeline cost to train (the vae's sampled model is its equal-time run).
        train_s = stages["equal_time_tokenizer"]["seconds"] if arch == "vae" else sum(s["seconds"] for s in stages.values())
        results[arch] = {"reconstruction": reconstruction, "generation": generation, "train_s": round(train_s, 1),
                         "stages": stages}
    return results


def figures(args, test: ImageDataConfig) -> None:
    output = Path(args.output_dir)
    dataset = build_image_dataset(test)
    images = torch.stack([dataset[i]["image"] for i in range(12)])  # (12, 3, 32, 32) in [-1, 1]
    save_reconstruction_rows({arch: load_tokenizer(output / arch / "tokenizer") for arch in args.architectures},
                             images, output / "reconstructions.png")
    rows = []
    for arch in args.architectures:
        pipe = trained_pipeline(args, arch)
        samples = pipe(12, class_labels=pipe.cycled_class_labels(12), generator=torch.Generator().manual_seed(0),
                       output_type="pt").images  # (12, 3, 32, 32) in [0, 1]
        rows.append(samples * 2 - 1)
    save_labelled_rows(rows, list(args.architectures), output / "samples.png", label_width=70)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="emoji")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--architectures", type=comma_choices(ARCHITECTURES), default=",".join(ARCHITECTURES),
                        help=f"some of {list(ARCHITECTURES)}")
    parser.add_argument("--tokenizer_steps", type=int, default=300, help="every tokenizer's equal step budget")
    parser.add_argument("--prior_steps", type=int, default=700, help="the vqgan prior's steps (which set the budget)")
    parser.add_argument("--budget_s", type=float, default=None,
                        help="the equal training time in seconds (default: what the vqgan pipeline took)")
    parser.add_argument("--num_images", type=int, default=DEFAULT_NUM_IMAGES, help="generated images per architecture")
    parser.add_argument("--eval_images", type=int, default=DEFAULT_NUM_IMAGES,
                        help="held-out images for the reconstruction metrics (the whole split where smaller)")
    parser.add_argument("--max_train_images", type=int, default=None, help="the first N training images (smoke runs)")
    parser.add_argument("--cache_dir", default=None, help="Inception feature cache (default: the user cache)")
    parser.add_argument("--output_dir", default="outputs/architectures")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    test = ImageDataConfig(dataset=args.dataset, split="test", resolution=32, data_dir=args.data_dir,
                           **DATASETS[args.dataset]["data"])
    with contextlib.redirect_stdout(sys.stderr):  # the stages' own lines; stdout stays one JSON object
        trained = train_all(args)
        result = {"dataset": args.dataset, "budget_s": trained["budget_s"],
                  "tokenizer_steps": args.tokenizer_steps, **evaluate(args, trained, test)}
        figures(args, test)
    emit_json(result, Path(args.output_dir) / "results.json")
    return result


if __name__ == "__main__":
    main()
