#!/usr/bin/env python
"""Benchmark: tokenizing Fashion-MNIST train (60,000 images) into index files, and reading them back.

Reports, as one JSON object: images/s of scripts/tokenize_dataset.py next to the raw `VQGAN.encode`
throughput of the same model on in-memory tensors of the same batch size (goal: at least 0.8 of raw),
peak memory of the tokenize process for 6,000 and for 60,000 images (it must not grow with the data),
bytes on disk per image, and the time to open the codes folder and read 10,000 random items.

    python benchmarks/bench_tokenize.py --tokenizer runs/fmnist-vq      # a tokenizer from "Stage one"
    python benchmarks/bench_tokenize.py                                 # trains a small one first (--train_steps)

Needs the Debian package dataset-fashion-mnist (or --data_dir with the IDX files).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from prior import CodesDataset
from tokenizer import VQGAN, VQGANConfig
from tokenizer.data import ImageDataConfig
from tokenizer.losses import LossConfig
from tokenizer.quantizer import QuantizerConfig
from pipelines.training import train_tokenizer
from tokenizer.training import TrainTokenizerConfig

ROOT = Path(__file__).resolve().parents[1]


def train_small_tokenizer(output: Path, steps: int, data_dir: str | None) -> Path:
    """The benchmark tokenizer of bench_tokenizer.py (8x8 grid, 512 codes), trained briefly."""
    model = VQGANConfig(
        downsample_factor=4, resolution=32, channels=32, z_channels=32, quantizer=QuantizerConfig(codebook_size=512, dead_code_threshold=2.0)
    )
    config = TrainTokenizerConfig(
        output_dir=str(output),
        data=ImageDataConfig(dataset="fashion-mnist", resolution=32, resize_mode="pad", data_dir=data_dir),
        model=model, loss=LossConfig(reconstruction_loss="l2", perceptual_loss="none", gan_weight=0.0),
        max_steps=steps, batch_size=64, learning_rate=1e-3, num_workers=1, checkpoint_every=steps, image_every=steps,
        progress=False,
    )
    return train_tokenizer(config)


@torch.no_grad()
def raw_encode_images_per_s(tokenizer: Path, batch_size: int, batches: int = 20) -> float:
    model = VQGAN.from_pretrained(tokenizer)
    images = torch.rand(batch_size, 3, 32, 32) * 2 - 1
    model.encode(images)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        model.encode(images)
    return batch_size * batches / (time.perf_counter() - start)


def tokenize(tokenizer: Path, output: Path, args, max_images: int | None) -> dict:
    """Run the command line in a child process, so its peak memory is its own."""
    command = [
        sys.executable, str(ROOT / "scripts" / "tokenize_dataset.py"), "--tokenizer", str(tokenizer),
        "--dataset", "fashion-mnist", "--resize_mode", "pad", "--split", "train", "--output_dir", str(output),
        "--batch_size", str(args.batch_size), "--num_workers", str(args.num_workers), "--no_progress",
    ]
    if max_images:
        command += ["--max_images", str(max_images)]
    if args.data_dir:
        command += ["--data_dir", args.data_dir]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])  # the script's summary, with its own peak RSS


def read_back(codes: Path, items: int) -> dict:
    start = time.perf_counter()
    ds = CodesDataset(codes)
    opened = time.perf_counter()
    order = np.random.default_rng(0).integers(0, len(ds), items)
    for i in order:
        ds[int(i)]
    done = time.perf_counter()
    files = [p for p in codes.glob("shard-*.npy")]
    return {
        "open_seconds": opened - start,
        "read_random_items": items,
        "read_seconds": done - opened,
        "bytes_per_image": sum(p.stat().st_size for p in files) / len(ds),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default=None, help="a trained tokenizer folder (default: train a small one)")
    parser.add_argument("--train_steps", type=int, default=300, help="steps for the small tokenizer when none is given")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokenizer = Path(args.tokenizer) if args.tokenizer else train_small_tokenizer(tmp / "tok", args.train_steps, args.data_dir)
        small = tokenize(tokenizer, tmp / "codes-6k", args, 6000)
        full = tokenize(tokenizer, tmp / "codes-60k", args, None)
        raw = raw_encode_images_per_s(tokenizer, args.batch_size)
        reading = read_back(tmp / "codes-60k", 10_000)
    result = {
        "images": full["count"],
        "tokenize_images_per_s": full["images_per_s"],
        "raw_encode_images_per_s": raw,
        "ratio_to_raw": full["images_per_s"] / raw,
        "peak_rss_mb_6k": small["peak_rss_mb"],
        "peak_rss_mb_60k": full["peak_rss_mb"],
        **reading,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "threads": torch.get_num_threads(),
        "goals": {"at_least_0.8_of_raw": full["images_per_s"] / raw >= 0.8},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
