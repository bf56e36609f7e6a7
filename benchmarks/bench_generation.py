#!/usr/bin/env python
"""Benchmark: generation quality and speed of a trained pipeline over a sweep of sampling settings.

For each setting (temperature, top-k, top-p, guidance scale) it generates --num_images images (default 2,000,
the protocol's floor) and measures FID, KID (mean ± std) and precision/recall against as many held-out images
(all of them where the split is smaller), then times sampling alone (--speed_images images, Inception not
counted) for images/s. The floors are printed once beside the sweep: two disjoint real sets at the same count,
and the tokenizer's reconstructions of the reference images (what a prior writing exactly their codes would score). Each setting also
writes an 8x8 grid of its samples to <output_dir>/<setting>.png, and the whole result goes to
<output_dir>/results.json and stdout. Real-image and reconstruction features are cached, so each setting costs
its own samples: about 6 minutes of Inception per 2,000 images on 2 CPU cores.

    python benchmarks/bench_generation.py --pipeline outputs/fmnist/pipeline --dataset fashion-mnist \\
        --class_labels uniform --output_dir outputs/sweep-fmnist
    python benchmarks/bench_generation.py --pipeline outputs/demo/pipeline --dataset emoji --output_dir outputs/sweep-emoji
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from pipelines.cli import comma_choices, emit_json
from pipelines.evaluation import DEFAULT_NUM_IMAGES, evaluate_generation
from pipelines.generation import ImageGenerationPipeline, load_pipeline
from tokenizer.data import ImageDataConfig

# name -> sampling keyword arguments. Guidance settings apply to class-conditional priors only.
SETTINGS = {
    "plain": {},
    "temperature-0.9": {"temperature": 0.9},
    "top-k-64": {"top_k": 64},
    "top-k-16": {"top_k": 16},
    "top-p-0.9": {"top_p": 0.9},
    "guidance-1.5": {"guidance_scale": 1.5},
    "guidance-2": {"guidance_scale": 2.0},
    "guidance-3": {"guidance_scale": 3.0},
    "guidance-2-top-k-64": {"guidance_scale": 2.0, "top_k": 64},
}


@torch.no_grad()
def images_per_s(pipe: ImageGenerationPipeline, count: int, labels, settings: dict, batch_size: int) -> float:
    pipe(min(count, 4), class_labels=labels[:4] if labels else None, output_type="pt", progress=False,
         **settings)  # warm-up
    started = time.perf_counter()
    pipe(count, class_labels=labels, generator=torch.Generator().manual_seed(1), output_type="pt",
         batch_size=batch_size, progress=False, **settings)
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="a saved ImageGenerationPipeline folder, or a vae's folder")
    parser.add_argument("--dataset", required=True, help="the data set the pipeline learned: emoji, fashion-mnist, ...")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--split", default="test", help="the held-out reference split")
    parser.add_argument("--floor_split", default="train", help="the disjoint real split of the real-vs-real floor")
    parser.add_argument("--resize_mode", choices=("crop", "pad"), default=None,
                        help="default: pad for fashion-mnist, crop otherwise")
    parser.add_argument("--class_labels", choices=("uniform",), default=None,
                        help="uniform: cycle through the classes (class-conditional priors)")
    parser.add_argument("--settings", type=comma_choices(SETTINGS), default=None,
                        help=f"comma-separated names from {list(SETTINGS)} (default: all that apply)")
    parser.add_argument("--num_images", type=int, default=DEFAULT_NUM_IMAGES)
    parser.add_argument("--speed_images", type=int, default=128, help="images timed for images/s")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--output_dir", default="outputs/sweep")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)

    pipe = load_pipeline(args.pipeline)
    def labels_for(count: int) -> list[int] | None:
        return pipe.cycled_class_labels(count) if args.class_labels == "uniform" else None

    conditional = labels_for(1) is not None
    # A vae (no prior) takes only a temperature.
    names = args.settings or [n for n, s in SETTINGS.items() if (conditional or "guidance_scale" not in s)
                              and (pipe.prior is not None or set(s) <= {"temperature"})]
    resize_mode = args.resize_mode or ("pad" if args.dataset == "fashion-mnist" else "crop")
    data = ImageDataConfig(dataset=args.dataset, split=args.split, resolution=pipe.tokenizer.config.autoencoder.resolution,
                           data_dir=args.data_dir, resize_mode=resize_mode)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = labels_for(args.num_images)
    results, floor = {}, None
    for name in names:
        settings = SETTINGS[name]
        metrics = evaluate_generation(
            pipe, data, num_images=args.num_images, class_labels=labels, batch_size=args.batch_size,
            cache_dir=args.cache_dir, floor_split=args.floor_split if floor is None else None,
            tokenizer_floor=floor is None, progress=not args.no_progress, **settings)
        floor = floor or metrics.pop("floor", None)
        speed_labels = labels[: args.speed_images] if labels else None
        metrics["images_per_s"] = images_per_s(pipe, args.speed_images, speed_labels, settings, args.batch_size)
        results[name] = {"settings": settings, **metrics}
        grid = pipe(64, class_labels=labels_for(64),
                    generator=torch.Generator().manual_seed(0), output_type="pt", **settings).images
        save_image(grid, out / f"{name}.png", nrow=8)
        (out / "results.json").write_text(json.dumps({"results": results, "floor": floor}, indent=2) + "\n")
    best = min(results, key=lambda n: results[n]["fid"])
    summary = {
        "setup": {"pipeline": args.pipeline, "dataset": args.dataset, "split": args.split,
                  "num_images": args.num_images, "class_labels": args.class_labels,
                  "threads": torch.get_num_threads()},
        "floor": floor,
        "results": results,
        "best_fid": best,
    }
    emit_json(summary, out / "results.json")
    return summary


if __name__ == "__main__":
    main()
