#!/usr/bin/env python
"""Benchmark: tokenizing Fashion-MNIST train (60,000 images) into index files, and reading them back.

Reports, as one JSON object: images/s of `pipelines.tokenize_dataset` (the figure of its summary: encoding
and writing, without loading) next to the raw `VQGAN.encode` throughput of the same model on in-memory tensors
of the same batch size (goal: at least 0.8 of raw), peak memory of the tokenize run for 6,000 and for 60,000
images (it must not grow with the data), bytes on disk per image, and the time to open the codes folder and
read 10,000 random items. Each tokenize run is a fresh child process (multiprocessing, spawn) whose peak
resident memory (VmHWM) is its own: imports, model, data and encoding, as a user's run of
scripts/tokenize_dataset.py would have.

    python benchmarks/bench_tokenize.py --tokenizer runs/fmnist-vq      # a tokenizer from "Stage one"
    python benchmarks/bench_tokenize.py                                 # trains a small one first (--train_steps)

Needs the Debian package dataset-fashion-mnist (or --data_dir with the IDX files).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from pipelines.cli import emit_json
from pipelines import TokenizeDatasetConfig, tokenize_dataset
from prior import CodesDataset
from tokenizer import VQGAN, AutoencoderConfig
from tokenizer.data import ImageDataConfig
from tokenizer.losses import LossConfig
from tokenizer.models.quantizer import QuantizerConfig
from pipelines.training import train_tokenizer
from tokenizer.training import TokenizerModelSettings, TrainTokenizerConfig

def train_small_tokenizer(output: Path, steps: int, data_dir: str | None) -> Path:
    """The benchmark tokenizer of bench_tokenizer.py (8x8 grid, 512 codes), trained briefly."""
    model = TokenizerModelSettings(
        autoencoder=AutoencoderConfig(downsample_factor=4, resolution=32, channels=32, z_channels=32),
        quantizer=QuantizerConfig(codebook_size=512, ema_decay=0.99, dead_code_threshold=2.0),
    )
    config = TrainTokenizerConfig(
        output_dir=str(output),
        data=ImageDataConfig(dataset="fashion-mnist", resolution=32, resize_mode="pad", data_dir=data_dir),
        model=model, loss=LossConfig(reconstruction_loss="l2", perceptual_loss="none", gan_weight=0.0),
        # The settings docs/benchmarks.md's figures were measured with (before the defaults became the small-32px recipe).
        max_steps=steps, batch_size=64, learning_rate=1e-3, lr_schedule="constant", warmup_steps=0, num_workers=1, checkpoint_every=steps, image_every=steps,
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


def _tokenize_and_measure(tokenizer: str, config: TokenizeDatasetConfig) -> dict:
    """In the child process: tokenize_dataset's summary, with the child's own peak resident memory."""
    with contextlib.redirect_stdout(sys.stderr):  # its summary line comes back as a value; stdout stays one JSON object
        summary = tokenize_dataset(tokenizer, config)["summary"]
    # Not ru_maxrss (the summary's peak_rss_mb): Linux carries a parent's peak over fork+exec into the child's
    # ru_maxrss, so after training a tokenizer here it would report this benchmark's peak. VmHWM belongs to the
    # child's own address space, which exec made fresh.
    status = Path("/proc/self/status").read_text()
    hwm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return {**summary, "peak_rss_mb": round(hwm_kb / 1024, 1)}


def tokenize(tokenizer: Path, output: Path, args, max_images: int | None) -> dict:
    """Tokenize Fashion-MNIST train in a fresh child process (spawn: nothing of this one), so its peak memory is its own."""
    config = TokenizeDatasetConfig(dataset="fashion-mnist", resize_mode="pad", split="train", output_dir=str(output),
                                   data_dir=args.data_dir, max_images=max_images, batch_size=args.batch_size,
                                   num_workers=args.num_workers, progress=False)
    # ProcessPoolExecutor's workers are not daemons, so the tokenize run may start its DataLoader workers.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(_tokenize_and_measure, str(tokenizer), config).result()


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
    emit_json(result, args.output_json)
    return result


if __name__ == "__main__":
    main()
