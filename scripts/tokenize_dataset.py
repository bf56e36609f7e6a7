#!/usr/bin/env python
"""Encode a whole dataset split into code-index files with a trained tokenizer.

    python scripts/tokenize_dataset.py --tokenizer runs/fmnist-vq --dataset fashion-mnist --resize_mode pad \
        --split train --output_dir codes/fmnist-train --flip
    accelerate launch --num_processes 2 scripts/tokenize_dataset.py ...   # each process writes its own shards

Writes sharded .npy code arrays (uint16 for codebooks up to 65,536 entries), labels when the data set has
them, and manifest.json (codebook size, grid, count, labels and class names, per-shard checksums, the
tokenizer's fingerprint, source, skipped inputs). Killed and started again with the same arguments, it
keeps the finished shards and redoes the rest. Read the result with prior.CodesDataset(output_dir).
"""

from __future__ import annotations

import argparse

from pipelines.dataset_tokenizing import TokenizeDatasetConfig, tokenize_dataset

DEFAULTS = TokenizeDatasetConfig  # defaults live once, in the dataclass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="folder written by train_tokenizer.py")
    parser.add_argument("--dataset", required=True,
                        help="'emoji', 'fashion-mnist', a local image folder (class sub-folders become labels) or a Hub dataset name")
    parser.add_argument("--split", default=DEFAULTS.split)
    parser.add_argument("--data_dir", default=DEFAULTS.data_dir, help="override the built-in data location")
    parser.add_argument("--resize_mode", choices=("crop", "pad"), default=DEFAULTS.resize_mode)
    parser.add_argument("--max_images", type=int, default=DEFAULTS.max_images, help="only the first N inputs of the split")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--batch_size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--num_workers", type=int, default=DEFAULTS.num_workers, help="DataLoader workers decoding images")
    parser.add_argument("--shard_size", type=int, default=DEFAULTS.shard_size, help="inputs per shard (the unit of resumption)")
    parser.add_argument("--flip", action="store_true", help="also store the codes of the mirrored images")
    parser.add_argument("--no_progress", action="store_true")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    try:
        config = TokenizeDatasetConfig(
            dataset=args.dataset, output_dir=args.output_dir, split=args.split, data_dir=args.data_dir,
            resize_mode=args.resize_mode, max_images=args.max_images, batch_size=args.batch_size,
            num_workers=args.num_workers, shard_size=args.shard_size, flip=args.flip, progress=not args.no_progress,
        )
        tokenize_dataset(args.tokenizer, config)
    except (ValueError, FileNotFoundError) as e:  # user errors: one line, exit 2, no traceback
        parser.error(str(e))


if __name__ == "__main__":
    main()
