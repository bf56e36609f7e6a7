#!/usr/bin/env python
"""Measure a trained tokenizer's reconstructions on a dataset split.

    python scripts/evaluate.py --tokenizer runs/fmnist-vq --dataset fashion-mnist --resize_mode pad \
        --split test --num_images 1000 --output_json eval.json

Prints and writes JSON with psnr, ssim, codebook_usage, perplexity and rfid (Fréchet distance between
TF-Inception features of originals and reconstructions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig
from tokenizer.evaluation import evaluate_tokenizer


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="folder written by train_tokenizer.py (config.json + model.safetensors)")
    parser.add_argument("--dataset", required=True, help="'emoji', 'fashion-mnist', a local image folder or a Hugging Face dataset name")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--resize_mode", choices=("crop", "pad"), default="crop")
    parser.add_argument("--num_images", type=int, default=None, help="evaluate the first N readable images (default: all)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--no_rfid", action="store_true", help="skip rFID (the Inception pass is the slow part on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output_json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    model = VQGAN.from_pretrained(args.tokenizer).to(args.device)
    data = ImageDataConfig(
        dataset=args.dataset, split=args.split, resolution=model.config.resolution,
        data_dir=args.data_dir, resize_mode=args.resize_mode,
    )
    result = evaluate_tokenizer(
        model, data, num_images=args.num_images, batch_size=args.batch_size,
        num_workers=args.num_workers, rfid=not args.no_rfid,
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
