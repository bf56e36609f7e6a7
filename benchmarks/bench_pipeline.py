#!/usr/bin/env python
"""Benchmark: the full two-stage flow at a fixed CPU budget, scored against the held-out split.

Fashion-MNIST (padded to 32x32, class-conditional GPT, guidance off and on) and emoji (the demo's flow):
FID and KID of generated images against the test split, sampling images/s, and the tokenizer's rFID on the
same number of test images, the floor a prior over its codes can reach. Prints one JSON object.

    python benchmarks/bench_pipeline.py --output_json outputs/bench_pipeline.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipelines import ImageGenerationPipeline, TokenizeDatasetConfig, tokenize_dataset
from pipelines.decoder import load_decoder
from pipelines.demo import run_demo
from pipelines.evaluation import evaluate_generation, evaluate_tokenizer
from prior import GPTPrior
from pipelines.training import train_prior
from prior.training import TrainPriorConfig
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig

ROOT = Path(__file__).resolve().parents[1]


def sampling_images_per_s(pipe: ImageGenerationPipeline, n: int, **kwargs) -> float:
    start = time.perf_counter()
    pipe(n, output_type="pt", generator=torch.Generator().manual_seed(0), **kwargs)
    return n / (time.perf_counter() - start)


def fashion_mnist(args, workdir: Path) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_tokenize import train_small_tokenizer

    started = time.perf_counter()
    tokenizer_dir = train_small_tokenizer(workdir / "tokenizer", args.tokenizer_steps, args.data_dir)
    codes = workdir / "codes"
    tokenize_dataset(tokenizer_dir, TokenizeDatasetConfig(dataset="fashion-mnist", resize_mode="pad", output_dir=str(codes),
                                                          data_dir=args.data_dir, num_workers=1, progress=False))
    config = TrainPriorConfig(codes_dir=str(codes), output_dir=str(workdir / "prior"), prior="gpt", size=args.prior_size,
                              max_steps=args.prior_steps, batch_size=64, learning_rate=1e-3, warmup_steps=100,
                              class_dropout=0.1, eval_every=args.prior_steps, checkpoint_every=args.prior_steps,
                              progress=False)
    prior_dir = train_prior(config, load_decoder(tokenizer_dir))
    train_seconds = time.perf_counter() - started
    pipe = ImageGenerationPipeline(VQGAN.from_pretrained(tokenizer_dir), GPTPrior.from_pretrained(prior_dir))
    test = ImageDataConfig(dataset="fashion-mnist", split="test", resolution=32, resize_mode="pad", data_dir=args.data_dir)
    result = {
        "budget": {"tokenizer_steps": args.tokenizer_steps, "prior_steps": args.prior_steps, "prior_size": args.prior_size,
                   "train_seconds": train_seconds},
        "tokenizer_rfid": evaluate_tokenizer(pipe.tokenizer, test, num_images=args.num_images, progress=False)["rfid"],
    }
    for scale in (1.0, args.guidance_scale):
        metrics = evaluate_generation(pipe, test, args.num_images, class_labels="uniform", guidance_scale=scale,
                                      top_k=args.top_k, progress=False)
        labels = [i % 10 for i in range(args.speed_images)]
        metrics["sampling_images_per_s"] = sampling_images_per_s(pipe, args.speed_images, class_labels=labels,
                                                                 guidance_scale=scale, top_k=args.top_k)
        result[f"guidance_{scale:g}"] = metrics
    return result


def emoji(args, workdir: Path) -> dict:
    """The demo's flow (run_demo) at its default budget; its metrics.json has what we need. With --emoji_from,
    the output folder of a demo that already ran is read instead (the demo takes most of 20 minutes)."""
    started = time.perf_counter()
    demo = Path(args.emoji_from) if args.emoji_from else workdir / "demo"
    if not args.emoji_from:
        run_demo(demo, eval_images=args.emoji_images)
    metrics = json.loads((demo / "metrics.json").read_text())
    pipe = ImageGenerationPipeline.from_pretrained(demo / "pipeline")
    return {
        "source": str(demo) if args.emoji_from else "run_demo run by this benchmark",
        "seconds": metrics["timings"]["total_s"] if args.emoji_from else time.perf_counter() - started,
        "tokenizer_rfid": metrics["tokenizer"]["rfid"],
        **metrics["generation"],
        "sampling_images_per_s": sampling_images_per_s(pipe, args.speed_images, top_k=64),
        "timings": metrics["timings"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer_steps", type=int, default=600)
    parser.add_argument("--prior_steps", type=int, default=800)
    parser.add_argument("--prior_size", default="small")
    parser.add_argument("--guidance_scale", type=float, default=3.0)
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--num_images", type=int, default=300,
                        help="Fashion-MNIST: generated and reference images for FID/KID (and rFID)")
    parser.add_argument("--speed_images", type=int, default=64)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--emoji_images", type=int, default=150,
                        help="generated and held-out emoji for FID/KID (the test split has 401)")
    parser.add_argument("--skip_emoji", action="store_true")
    parser.add_argument("--emoji_from", default=None, help="a finished demo.py output folder to read instead of rerunning it")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)
    result = {"threads": torch.get_num_threads()}
    # The stages' own lines (tokenize summary, resume notes) go to stderr: stdout stays one JSON object.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        result["fashion_mnist"] = fashion_mnist(args, Path(tmp) / "fmnist")
        if not args.skip_emoji:
            result["emoji"] = emoji(args, Path(tmp) / "emoji")
    text = json.dumps(result, indent=2)
    print(text)
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
