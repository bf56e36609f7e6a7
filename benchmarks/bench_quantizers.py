#!/usr/bin/env python
"""Benchmark: VQ against FSQ and LFQ at equal bits per image and equal steps, everything else fixed.

The same autoencoder, losses (the full VQ-GAN recipe), optimiser, data and step count; only the quantiser
changes, at --bits bits per code (so bits per image = bits x grid cells):

  vq    a learned codebook of 2^bits codes (EMA, k-means init, dead-code restarts; the restart threshold scaled by
        256 / 2^bits so that it is the same share of a batch's mean count per code as the preset's at 256 codes)
  fsq   finite scalar quantization with Mentzer et al.'s levels for 2^bits (8 bits: 8,6,5 = 240 codes, 7.91 bits;
        10 bits: 8,5,5,5 = 1,000 codes, 9.97 bits)
  lfq   lookup-free: bits sign bits per code (2^bits codes), MAGVIT-v2's entropy loss at its defaults

Each run is measured on the held-out split by bench_recipe's run(): PSNR, SSIM, LPIPS, rFID, rKID, codebook
usage and perplexity over the split's codes, s/step. Runs are kept (a folder with result.json is read back).
Writes <output_dir>/quantizers.png (originals, then each run's reconstructions) and <output_dir>/results.json.

    python benchmarks/bench_quantizers.py --dataset fashion-mnist --bits 10 --steps 400 --output_dir outputs/quantizers-fmnist
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import torch

from bench_recipe import base_config, comparison_grid, recipe_config, run
from pipelines.cli import comma_choices, emit_json
from pipelines.evaluation import DEFAULT_NUM_IMAGES
from tokenizer.models.quantizer import FSQ_LEVELS_FOR_SIZE, QUANTIZER_KINDS, QuantizerConfig
from tokenizer.training import DISC_START_FRACTION


def quantizer_at(base: QuantizerConfig, kind: str, bits: int) -> QuantizerConfig:
    """`base` (the recipe's VQ settings) turned into `kind` at `bits` bits per code."""
    size = 2**bits
    if kind == "vq":
        return dataclasses.replace(base, codebook_size=size,
                                   dead_code_threshold=base.dead_code_threshold * base.codebook_size / size)
    if kind == "fsq":
        return QuantizerConfig(kind="fsq", fsq_levels=FSQ_LEVELS_FOR_SIZE[size], codebook_size=size,
                               usage_window=base.usage_window)
    return QuantizerConfig(kind="lfq", codebook_size=size, code_dim=bits, beta=base.beta,
                           usage_window=base.usage_window)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("emoji", "fashion-mnist"), default="fashion-mnist")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--preset", default="small-32px", help="the model, losses and optimiser (a 32 px preset)")
    parser.add_argument("--config", default=None, help="a saved TrainTokenizerConfig JSON instead of --preset")
    parser.add_argument("--bits", type=int, default=8, help=f"bits per code, one of {[int(math.log2(s)) for s in FSQ_LEVELS_FOR_SIZE]}")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--disc_start", type=float, default=DISC_START_FRACTION)
    parser.add_argument("--quantizers", type=comma_choices(QUANTIZER_KINDS), default=",".join(QUANTIZER_KINDS))
    parser.add_argument("--eval_images", type=int, default=DEFAULT_NUM_IMAGES)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--output_dir", default="outputs/quantizers")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    if 2**args.bits not in FSQ_LEVELS_FOR_SIZE:
        parser.error(f"--bits {args.bits}: expected one of {[int(math.log2(s)) for s in FSQ_LEVELS_FOR_SIZE]}")
    out = Path(args.output_dir)
    base = base_config(args)
    test = dataclasses.replace(base.data, split="test", random_flip=False)
    results, run_dirs = {}, {}
    for kind in args.quantizers:
        quantizer = quantizer_at(base.model.quantizer, kind, args.bits)
        config = recipe_config(dataclasses.replace(base, model=dataclasses.replace(base.model, quantizer=quantizer)),
                               "vqgan", args.steps, out / kind)
        run_dirs[kind] = out / kind
        result = run(kind, config, test, args)
        grid = config.model.model_config().grid_shapes[0]
        result["bits_per_image"] = round(math.log2(quantizer.codebook_size) * grid[0] * grid[1], 1)
        result["codebook_size"] = quantizer.codebook_size
        results[kind] = result
    comparison_grid(run_dirs, test, out / "quantizers.png")
    summary = {"setup": {"dataset": args.dataset, "bits_per_code": args.bits, "steps": args.steps,
                         "config": args.config, "preset": None if args.config else args.preset,
                         "threads": torch.get_num_threads()},
               "runs": {k: {m: v for m, v in r.items() if m != "config"} for k, r in results.items()},
               "grid": str(out / "quantizers.png")}
    emit_json(summary, out / "results.json")
    return summary


if __name__ == "__main__":
    main()
