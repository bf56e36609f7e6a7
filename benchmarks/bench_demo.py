#!/usr/bin/env python
"""Benchmark: the demo's recipe against earlier ones, each trained in full and evaluated under the protocol.

Each recipe runs the whole demo flow (pipelines.demo.run_demo: tokenizer, tokenize, GPT prior, pipeline) into
<output_dir>/<recipe>/, then generates --num_images samples (default 2,000; top-k 64 as the demo samples) and
measures FID, KID (mean ± std) and precision/recall against all 401 held-out emoji, with both floors beside
them: 2,000 training emoji against the same reference, and the tokenizer's reconstructions of the reference
(its rFID). Tokenizer PSNR, SSIM and LPIPS are over the same held-out emoji. Recipes:

- "demo": the demo as it stands (pipelines.demo.DEMO_RECIPE: the `small-32px` preset at width 32 with
  ST-LPIPS-AlexNet at 0.1, 600 tokenizer and 900 prior steps).
- "preset-width-64": the `small-32px` preset at its width 64 with the perceptual loss it had when measured
  (ST-LPIPS-VGG at 1.0), cut to the steps the demo's budget allows it (250 + 600).
- "vqvae-equal-time": the preset with the perceptual loss and the GAN off at 450 + 700 steps (a plain VQ-VAE at
  about the equal time of the preset at 300 + 700 steps).
- "before-issue-10": the demo's recipe before the recipe work (width 32, codebook EMA decay 0.99, ST-LPIPS-AlexNet
  at 0.1, GAN weight 0.1 with a 32-channel discriminator; 400 tokenizer and 900 prior steps).
- "width-32-ema-0.9": that recipe with only the codebook EMA decay at 0.9 (the collapse fixed).

Finished recipes are kept (<output_dir>/<recipe>/protocol.json) and reused when their recipe is unchanged.
Writes <output_dir>/samples.png (16 samples per recipe, a label on each row), reconstructions.png (16 held-out
emoji, then each recipe's reconstructions) and <output_dir>/results.json.
Each recipe runs the demo's own quick check too (150 samples), so the "demo" row's `timings` are those of
`scripts/demo.py`; timing a first run needs an empty feature cache (TESSERA_CACHE=<new folder>; --cache_dir keeps
the protocol's features apart). About 25 minutes per recipe on 2 CPU cores (training ~17, Inception ~7).

    python benchmarks/bench_demo.py --output_dir outputs/bench-demo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pipelines.cli import comma_choices
from pipelines.demo import DEMO_RECIPE, PRIOR_STEPS, TOKENIZER_STEPS, run_demo
from pipelines.evaluation import DEFAULT_NUM_IMAGES, evaluate_generation
from figures import save_labelled_rows, save_reconstruction_rows
from pipelines.generation import ImageGenerationPipeline
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig, build_image_dataset

RECIPES = {
    "demo": {"tokenizer_steps": TOKENIZER_STEPS, "prior_steps": PRIOR_STEPS, "recipe": DEMO_RECIPE},
    # The `small-32px` preset at its width 64, as it was when measured (ST-LPIPS-VGG at 1; now AlexNet at 0.1), at
    # the steps the budget allows it.
    "preset-width-64": {"tokenizer_steps": 250, "prior_steps": 600, "recipe": {"tokenizer": {
        "loss": {"perceptual_loss": "stlpips-vgg", "perceptual_weight": 1.0}}}},
    # 1.12 against 1.70 s per step at width 64 (docs/benchmarks.md, "The recipe, measured"): 1.5x the steps.
    "vqvae-equal-time": {"tokenizer_steps": 450, "prior_steps": 700,
                         "recipe": {"tokenizer": {"loss": {"perceptual_loss": "none", "gan_weight": 0.0}}}},
    "before-issue-10": {"tokenizer_steps": 400, "prior_steps": 900, "recipe": {"tokenizer": {
        "model": {"autoencoder": {"channels": 32, "z_channels": 32}, "quantizer": {"ema_decay": 0.99}},
        "loss": {"perceptual_loss": "stlpips-alex", "perceptual_weight": 0.1, "gan_weight": 0.1},
        "discriminator": {"channels": 32}}}},
    # The same with only the codebook collapse fixed (EMA decay 0.9): width 32 costs half as much per step.
    "width-32-ema-0.9": {"tokenizer_steps": 400, "prior_steps": 900, "recipe": {"tokenizer": {
        "model": {"autoencoder": {"channels": 32, "z_channels": 32}},
        "loss": {"perceptual_loss": "stlpips-alex", "perceptual_weight": 0.1, "gan_weight": 0.1},
        "discriminator": {"channels": 32}}}},
}
TOP_K = 64  # the demo's own sampling setting


def run_recipe(name: str, output: Path, test: ImageDataConfig, args) -> dict:
    run_dir = output / name
    done = run_dir / "protocol.json"
    spec = {**RECIPES[name], "num_images": args.num_images, "top_k": TOP_K}
    if done.exists():
        cached = json.loads(done.read_text())
        if cached.get("spec") == spec:
            return cached
        raise ValueError(f"{done} was made with {cached.get('spec')}, not {spec}: remove {run_dir} to run it again")
    # With the demo's own quick check, so that the "demo" row's timings are those of scripts/demo.py.
    demo = run_demo(run_dir, spec["tokenizer_steps"], spec["prior_steps"], recipe=spec["recipe"])
    pipe = ImageGenerationPipeline.from_pretrained(run_dir / "pipeline")
    generation = evaluate_generation(pipe, test, num_images=args.num_images, top_k=TOP_K, floor_split="train",
                                     cache_dir=args.cache_dir, progress=not args.no_progress)
    result = {"name": name, "spec": spec, "tokenizer": demo["tokenizer"], "generation": generation,
              "prior_val_bits_per_token": demo["prior_val_bits_per_token"], "timings": demo["timings"]}
    done.write_text(json.dumps(result, indent=2) + "\n")
    return result


@torch.no_grad()
def samples_grid(output: Path, names: list[str], count: int = 16) -> None:
    """16 samples per recipe (samples.png) and its reconstructions of 16 held-out emoji (reconstructions.png)."""
    rows = []
    for name in names:
        pipe = ImageGenerationPipeline.from_pretrained(output / name / "pipeline")
        images = pipe(count, top_k=TOP_K, generator=torch.Generator().manual_seed(0), output_type="pt",
                      progress=False).images
        rows.append(images * 2 - 1)
    save_labelled_rows(rows, names, output / "samples.png")
    held_out = build_image_dataset(ImageDataConfig(dataset="emoji", split="test", resolution=32))
    images = torch.stack([held_out[i]["image"] for i in range(count)])  # (count, 3, 32, 32) in [-1, 1]
    save_reconstruction_rows({name: VQGAN.from_pretrained(output / name / "tokenizer") for name in names}, images,
                             output / "reconstructions.png")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=comma_choices(RECIPES), default=list(RECIPES),
                        help=f"comma-separated names from {list(RECIPES)}")
    parser.add_argument("--num_images", type=int, default=DEFAULT_NUM_IMAGES)
    parser.add_argument("--cache_dir", default=None, help="Inception feature cache (default: the user cache)")
    parser.add_argument("--output_dir", default="outputs/bench-demo")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    output = Path(args.output_dir)
    test = ImageDataConfig(dataset="emoji", split="test", resolution=32)
    results = {}
    for name in args.recipes:
        result = run_recipe(name, output, test, args)
        g = result["generation"]
        results[name] = {
            "fid": g["fid"], "kid_mean": g["kid_mean"], "kid_std": g["kid_std"], "precision": g["precision"],
            "recall": g["recall"], "rfid": g["floor"]["tokenizer"]["fid"], "real_floor_fid": g["floor"]["real"]["fid"],
            **{k: result["tokenizer"][k] for k in ("psnr", "ssim", "lpips", "codebook_usage")},
            "prior_val_bits_per_token": result["prior_val_bits_per_token"], "timings": result["timings"],
            "num_images": g["num_images"], "num_reference_images": g["num_reference_images"],
        }
        print(json.dumps({name: results[name]}), flush=True)
    samples_grid(output, list(args.recipes))
    (output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
