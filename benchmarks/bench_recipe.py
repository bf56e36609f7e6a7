#!/usr/bin/env python
"""Benchmark: is the VQ-GAN recipe worth it? The same autoencoder trained three ways, at equal step budgets
and at equal wall time, on one data set at 32 px:

  vqvae       the reconstruction loss alone (a plain VQ-VAE: --perceptual_loss none --gan_weight 0)
  perceptual  + the perceptual loss (--gan_weight 0)
  vqgan       + perceptual + the patch GAN with the adaptive weight (the full recipe)

Equal steps: every recipe trains --steps steps. Equal wall time: the cheaper recipes train again for as many
steps as fit in the full recipe's training time (the perceptual network costs several times a plain step on
CPU). Each run is measured on the held-out split: PSNR, SSIM, LPIPS, rFID (reconstructions against the
originals' cached Inception features, --eval_images of them, the whole split where smaller), codebook usage,
wall time (train_s with start-up, loop_s the training loop alone, which the equal-time runs match), and, for
the GAN run, the GAN-phase check (PSNR and usage before the discriminator's start against
the end; a collapse is flagged and makes the exit status 1). Writes <output_dir>/recipes.png (top row the
originals, then one row per run, labelled) and <output_dir>/results.json, and prints the JSON.

Runs are kept: a run whose folder already holds result.json is read back rather than trained again, so an
interrupted benchmark continues where it stopped (delete a run's folder to train it anew).

    python benchmarks/bench_recipe.py --dataset emoji --steps 1500 --output_dir outputs/recipe-emoji
    python benchmarks/bench_recipe.py --dataset fashion-mnist --steps 1500 --output_dir outputs/recipe-fmnist
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from pipelines.cli import comma_choices, config_from_dict, emit_json, merge_settings, preset_settings, read_config_file
from pipelines.evaluation import DEFAULT_NUM_IMAGES, evaluate_tokenizer
from figures import save_reconstruction_rows
from pipelines.training import train_tokenizer
from pipelines.training_run import read_metrics
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig, build_image_dataset
from tokenizer.training.gan_phase import check_gan_phase
from tokenizer.training.presets import TOKENIZER_PRESETS
from tokenizer.training import DISC_START_FRACTION, TrainTokenizerConfig

RECIPES = {
    "vqvae": dict(perceptual_loss="none", gan_weight=0.0),
    "perceptual": dict(gan_weight=0.0),
    "vqgan": dict(),
}
FULL = "vqgan"
PRESETS_32PX = sorted(n for n, p in TOKENIZER_PRESETS.items() if p["model"]["autoencoder"]["resolution"] == 32)


def base_config(args) -> TrainTokenizerConfig:
    """The recipe under test: a preset (or a saved config) on the chosen data set, --steps long."""
    data = dict(dataset=args.dataset, split="train", resolution=32, random_flip=args.dataset == "emoji",
                resize_mode="pad" if args.dataset == "fashion-mnist" else "crop", data_dir=args.data_dir)
    settings = (TrainTokenizerConfig.upgrade_settings(read_config_file(args.config)) if args.config
                else preset_settings(TOKENIZER_PRESETS, args.preset))
    settings = merge_settings(settings, {"data": data, "output_dir": args.output_dir})
    config = config_from_dict(TrainTokenizerConfig, settings)
    return dataclasses.replace(
        config, max_steps=args.steps, progress=not args.no_progress, resume_from_checkpoint=None,
        image_every=args.steps, checkpoint_every=args.steps, log_every=max(1, args.steps // 60),
        loss=dataclasses.replace(config.loss, disc_start_step=int(args.disc_start * args.steps)),
    )


def recipe_config(base: TrainTokenizerConfig, recipe: str, steps: int, run_dir: Path) -> TrainTokenizerConfig:
    loss = dataclasses.replace(base.loss, **RECIPES[recipe])
    if steps != base.max_steps:  # equal-time runs: the same schedule shape over their own length
        loss = dataclasses.replace(loss, disc_start_step=int(loss.disc_start_step * steps / base.max_steps))
    return dataclasses.replace(base, loss=loss, max_steps=steps, output_dir=str(run_dir),
                               image_every=steps, checkpoint_every=steps, log_every=max(1, steps // 60))


def run(name: str, config: TrainTokenizerConfig, test: ImageDataConfig, args) -> dict:
    """Train (or read back) one run and measure it on the held-out split."""
    run_dir = Path(config.output_dir)
    done = run_dir / "result.json"
    if done.is_file():
        result = json.loads(done.read_text())
        if result["config"] != _recipe_settings(config):
            raise ValueError(f"{run_dir} holds a run of other settings than this benchmark asks for (steps, "
                             f"losses or model): delete the folder or choose another --output_dir")
        return result
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    train_tokenizer(config)
    train_s = time.perf_counter() - started
    model = VQGAN.from_pretrained(run_dir)
    metrics = evaluate_tokenizer(model, test, num_images=args.eval_images, progress=not args.no_progress,
                                 cache_dir=args.cache_dir)
    records = read_metrics(run_dir)
    gan = check_gan_phase(records, config.loss.disc_start_step) if config.loss.gan_weight > 0 else None
    loop_s = config.max_steps / records[-1]["steps_per_s"]  # the training loop alone, without start-up
    result = {
        "name": name, "steps": config.max_steps, "train_s": round(train_s, 1), "loop_s": round(loop_s, 1),
        "s_per_step": round(loop_s / config.max_steps, 4),
        **{k: metrics[k] for k in ("psnr", "ssim", "lpips", "flat_colour_error", "rfid", "rkid_mean", "rkid_std",
                                    "codebook_usage", "perplexity", "num_images")},
        "gan_phase": gan.to_dict() if gan is not None else None,
        "config": _recipe_settings(config),
    }
    done.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _recipe_settings(config: TrainTokenizerConfig) -> dict:
    """What makes two runs the same run (the train config without where it is written or how it reports)."""
    settings = json.loads(json.dumps(dataclasses.asdict(config)))
    for key in ("output_dir", "progress", "num_workers"):
        settings.pop(key, None)
    return settings


def comparison_grid(run_dirs: dict[str, Path], test: ImageDataConfig, path: Path, count: int = 12) -> None:
    """Originals on top, then each run's reconstructions of the same held-out images, a label on the left."""
    dataset = build_image_dataset(test)
    images = torch.stack([dataset[i]["image"] for i in range(count)])  # (n, 3, 32, 32) in [-1, 1]
    save_reconstruction_rows({name: VQGAN.from_pretrained(run_dir) for name, run_dir in run_dirs.items()}, images, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("emoji", "fashion-mnist"), default="emoji")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--preset", default="small-32px", choices=PRESETS_32PX,
                        help="the recipe's model, losses and optimiser (tokenizer.training.presets; the 32 px ones)")
    parser.add_argument("--config", default=None, help="a saved TrainTokenizerConfig JSON instead of --preset")
    parser.add_argument("--steps", type=int, default=1500, help="the equal step budget of every recipe")
    parser.add_argument("--disc_start", type=float, default=DISC_START_FRACTION,
                        help="where the discriminator starts, as a fraction of the steps (default: the trainer's)")
    parser.add_argument("--recipes", type=comma_choices(RECIPES), default=",".join(RECIPES),
                        help=f"some of {list(RECIPES)}")
    parser.add_argument("--equal_time", type=comma_choices([r for r in RECIPES if r != FULL]),
                        default="vqvae,perceptual", help="the recipes trained again for the full recipe's time ('' = none)")
    parser.add_argument("--eval_images", type=int, default=DEFAULT_NUM_IMAGES,
                        help="held-out images for every metric (the whole split where smaller)")
    parser.add_argument("--cache_dir", default=None, help="Inception feature cache (default ~/.cache/tessera)")
    parser.add_argument("--output_dir", default="outputs/recipe")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    recipes, equal_time = args.recipes, args.equal_time
    if not set(equal_time) <= set(recipes):
        parser.error(f"--equal_time {equal_time}: each must also be among --recipes {recipes}")

    out = Path(args.output_dir)
    base = base_config(args)
    test = dataclasses.replace(base.data, split="test", random_flip=False)
    results, run_dirs = {}, {}
    for recipe in recipes:
        run_dirs[recipe] = out / recipe
        results[recipe] = run(recipe, recipe_config(base, recipe, args.steps, out / recipe), test, args)
    if equal_time and FULL in results:
        budget = results[FULL]["loop_s"]  # equal time in the training loop (start-up excluded on every side)
        for recipe in equal_time:
            steps = max(1, round(budget / results[recipe]["s_per_step"]))
            name = f"{recipe}@time"
            run_dirs[name] = out / f"{recipe}-equal-time"
            results[name] = run(name, recipe_config(base, recipe, steps, run_dirs[name]), test, args)
    comparison_grid(run_dirs, test, out / "recipes.png")
    collapsed = [n for n, r in results.items() if r["gan_phase"] and r["gan_phase"]["collapsed"]]
    summary = {
        "setup": {
            "dataset": args.dataset, "preset": None if args.config else args.preset, "config": args.config,
            "steps": args.steps, "disc_start_step": base.loss.disc_start_step, "batch_size": base.batch_size,
            "parameters": sum(p.numel() for p in VQGAN(base.model.model_config()).parameters()),
            "eval_split": "test", "threads": torch.get_num_threads(),
        },
        "runs": results,
        "gan_phase_collapsed": collapsed,
        "grid": str(out / "recipes.png"),
    }
    emit_json(summary, out / "results.json")
    if collapsed:
        print(f"GAN phase collapsed in {collapsed}", file=sys.stderr)
    return summary


if __name__ == "__main__":
    summary = main()
    raise SystemExit(1 if summary["gan_phase_collapsed"] else 0)
