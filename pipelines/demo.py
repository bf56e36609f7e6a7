"""The demo as a library function: the whole two-stage flow on the built-in emoji set at 32x32, on CPU.

`run_demo(output_dir)` trains a VQ-GAN tokenizer (8x8 codes), tokenizes the emoji with mirrored copies,
trains a GPT prior on the codes, samples a grid through the pipeline and evaluates reconstructions and
samples. scripts/demo.py is its command line; benchmarks/bench_pipeline.py runs it in-process.
Both training configs resume from their latest checkpoint, so a second run continues (or reuses) the first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from pipelines.dataset_tokenizing import TokenizeDatasetConfig, tokenize_dataset
from pipelines.decoder import load_decoder
from pipelines.evaluation import evaluate_generation, evaluate_tokenizer
from pipelines.generation import ImageGenerationPipeline
from pipelines.training import train_prior, train_tokenizer
from pipelines.training_run import read_metrics
from prior import GPTPrior
from prior.presets import PRIOR_PRESETS
from prior.training import TrainPriorConfig
from pipelines.cli import config_from_preset
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig, build_image_dataset
from tokenizer.training.previews import save_reconstruction_grid
from tokenizer.training.presets import TOKENIZER_PRESETS
from tokenizer.training import TrainTokenizerConfig

# The demo's budget: at most 20 minutes on 2 cores with its quick evaluation (README, "Two commands").
# Its tokenizer is the `small-32px` preset narrowed to width 32 (autoencoder and discriminator): a step costs a
# third as much, so the budget buys more than twice the steps, and those beat fewer steps at the preset's width
# (docs/benchmarks.md, "The demo's recipe, measured under the protocol"). Longer runs keep the preset's width.
TOKENIZER_STEPS = 600
PRIOR_STEPS = 900
DEMO_RECIPE = {"tokenizer": {"model": {"autoencoder": {"channels": 32, "z_channels": 32}},
                             "discriminator": {"channels": 32}}}
EVAL_IMAGES = 150  # the demo's quick FID/KID check; quality claims use the protocol's 2,000 (benchmarks/bench_demo.py)

def tokenizer_config(output_dir: Path, steps: int, recipe: dict | None = None) -> TrainTokenizerConfig:
    """The `small-32px` preset (tokenizer/training/presets.py) cut to `steps` (the discriminator starts at 60% of them);
    `recipe`: a partial config dict laid over it (the demo's: DEMO_RECIPE["tokenizer"])."""
    budget = {
        "output_dir": str(output_dir / "tokenizer"),
        "data": {"dataset": "emoji", "split": "train", "resolution": 32, "random_flip": True},
        "max_steps": steps, "warmup_steps": min(50, steps // 4), "num_workers": 1, "log_every": 25,
        "image_every": max(steps // 4, 1), "checkpoint_every": max(steps // 2, 1),
        "resume_from_checkpoint": "latest",  # a second `make demo` continues (or reuses) the first one's run
    }
    return config_from_preset(TrainTokenizerConfig, TOKENIZER_PRESETS, "small-32px", budget, recipe)


def tokenize_config(codes_dir: Path, max_images: int | None) -> TokenizeDatasetConfig:
    return TokenizeDatasetConfig(dataset="emoji", split="train", output_dir=str(codes_dir), max_images=max_images,
                                 flip=True, num_workers=1)


def prior_config(output_dir: Path, steps: int, recipe: dict | None = None) -> TrainPriorConfig:
    """The `small-32px` prior preset (prior/presets.py) on the (mirrored) codes for `steps`; `recipe`: a partial
    config dict laid over it."""
    budget = {
        "codes_dir": str(output_dir / "codes"), "output_dir": str(output_dir / "prior"), "include_flipped": True,
        "max_steps": steps, "warmup_steps": min(100, steps // 4), "eval_every": max(steps // 4, 1),
        "sample_every": max(steps // 2, 1), "checkpoint_every": max(steps // 2, 1), "resume_from_checkpoint": "latest",
    }
    return config_from_preset(TrainPriorConfig, PRIOR_PRESETS, "small-32px", budget, recipe)


def run_demo(output_dir: str | Path, tokenizer_steps: int = TOKENIZER_STEPS, prior_steps: int = PRIOR_STEPS,
             eval_images: int = EVAL_IMAGES, quick: bool = False, recipe: dict | None = None) -> dict:
    """Run the demo into `output_dir` and return what it writes to <output_dir>/metrics.json.

    Writes tokenizer/, codes/, prior/, pipeline/ (ImageGenerationPipeline.from_pretrained), samples.png
    (64 samples), reconstructions.png (top: held-out emoji, bottom: decoded) and metrics.json (tokenizer,
    generation when eval_images > 0, prior_val_bits_per_token, timings). `quick` shrinks every stage to a few
    steps and skips FID (a smoke test); the defaults aim at 20 minutes on 2 cores. `recipe`: partial config
    dicts {"tokenizer": {...}, "prior": {...}} laid over the `small-32px` presets (default: DEMO_RECIPE;
    benchmarks/bench_demo.py measures others).
    """
    recipe = DEMO_RECIPE if recipe is None else recipe
    if quick:
        tokenizer_steps, prior_steps, eval_images = 2, 2, 0
    output = Path(output_dir)
    timings, started = {}, time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - started - sum(timings.values()), 1)

    torch.manual_seed(0)
    tokenizer_dir = train_tokenizer(tokenizer_config(output, tokenizer_steps, recipe.get("tokenizer")))
    lap("train_tokenizer_s")
    tokenize_dataset(tokenizer_dir, tokenize_config(output / "codes", 64 if quick else None))
    lap("tokenize_s")
    prior_dir = train_prior(prior_config(output, prior_steps, recipe.get("prior")), load_decoder(tokenizer_dir))
    lap("train_prior_s")
    pipe = ImageGenerationPipeline(VQGAN.from_pretrained(tokenizer_dir), GPTPrior.from_pretrained(prior_dir))
    test = ImageDataConfig(dataset="emoji", split="test", resolution=32)  # held-out: reconstructions and every metric
    _save_pipeline_and_grids(pipe, test, output)
    lap("sample_s")
    metrics = _evaluate(pipe, test, Path(prior_dir), eval_images)
    lap("evaluate_s")
    metrics["timings"] = {**timings, "total_s": round(time.perf_counter() - started, 1)}
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _save_pipeline_and_grids(pipe: ImageGenerationPipeline, test: ImageDataConfig, output: Path) -> None:
    pipe.save_pretrained(output / "pipeline")
    samples = pipe(64, top_k=64, generator=torch.Generator().manual_seed(0), output_type="pt",
                   progress=False).images  # (64, 3, 32, 32)
    save_image(samples, output / "samples.png", nrow=8)
    dataset = build_image_dataset(test)
    save_reconstruction_grid(pipe.tokenizer, torch.stack([dataset[i]["image"] for i in range(16)]), output / "reconstructions.png")


def _evaluate(pipe: ImageGenerationPipeline, test: ImageDataConfig, prior_dir: Path, eval_images: int) -> dict:
    """Tokenizer metrics on the whole test split; generation FID/KID/precision/recall on `eval_images` samples
    against as many held-out emoji, with the floors beside them (the tokenizer's rFID is its floor). A quick
    check: quality claims use tessera evaluate at 2,000 samples (docs/evaluation.md)."""
    metrics = {"tokenizer": evaluate_tokenizer(pipe.tokenizer, test, rfid=False, progress=False)}
    if eval_images > 0:
        generation = evaluate_generation(pipe, test, num_images=eval_images, top_k=64, progress=False)
        metrics["tokenizer"]["rfid"] = generation["floor"]["tokenizer"]["fid"]
        metrics["tokenizer"]["rfid_images"] = generation["floor"]["tokenizer"]["num_images"]
        metrics["generation"] = generation
    lines = read_metrics(prior_dir)
    metrics["prior_val_bits_per_token"] = next((l["val_bits_per_token"] for l in reversed(lines) if l.get("val_bits_per_token")), None)
    return metrics
