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
import json
import resource
import time
from pathlib import Path

from accelerate import PartialState
from tqdm.auto import tqdm

from prior.index_files import CodesWriter
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig, build_image_dataset
from tokenizer.encoding import encode_range


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="folder written by train_tokenizer.py")
    parser.add_argument("--dataset", required=True,
                        help="'emoji', 'fashion-mnist', a local image folder (class sub-folders become labels) or a Hub dataset name")
    parser.add_argument("--split", default="train")
    parser.add_argument("--data_dir", default=None, help="override the built-in data location")
    parser.add_argument("--resize_mode", choices=("crop", "pad"), default="crop")
    parser.add_argument("--max_images", type=int, default=None, help="only the first N inputs of the split")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--num_workers", type=int, default=2, help="DataLoader workers decoding images")
    parser.add_argument("--shard_size", type=int, default=10_000, help="inputs per shard (the unit of resumption)")
    parser.add_argument("--flip", action="store_true", help="also store the codes of the mirrored images")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    if args.shard_size < 1 or args.batch_size < 1:
        parser.error(f"--shard_size {args.shard_size} and --batch_size {args.batch_size} must be positive")
    return args


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    state = PartialState()
    model = VQGAN.from_pretrained(args.tokenizer).to(state.device).eval()
    data = ImageDataConfig(
        dataset=args.dataset, split=args.split, resolution=model.config.resolution, data_dir=args.data_dir,
        resize_mode=args.resize_mode, max_images=args.max_images,
    )
    dataset = build_image_dataset(data)
    writer = CodesWriter(args.output_dir, {
        "codebook_size": model.config.codebook_size,
        "grid_shapes": [list(g) for g in model.config.grid_shapes],
        "shard_size": args.shard_size,
        "num_inputs": len(dataset),
        "has_labels": dataset.num_classes > 0,
        "flipped": args.flip,
        "tokenizer_fingerprint": model.fingerprint(),
        "source": {"dataset": args.dataset, "split": args.split, "resolution": data.resolution,
                   "resize_mode": args.resize_mode, "max_images": args.max_images},
    })
    if state.is_main_process:
        writer.start()
    state.wait_for_everyone()

    done = writer.completed_shards()
    mine = [i for i in range(writer.num_shards) if i % state.num_processes == state.process_index and i not in done]
    if done and state.is_main_process:
        print(f"resuming: {len(done)} of {writer.num_shards} shards already complete")
    todo = sum(writer.shard_range(i)[1] - writer.shard_range(i)[0] for i in mine)
    bar = tqdm(total=todo, unit="img", desc="tokenize", disable=args.no_progress or not state.is_main_process)
    started = time.perf_counter()
    for index in mine:
        encoded = encode_range(model, dataset, *writer.shard_range(index), batch_size=args.batch_size,
                               num_workers=args.num_workers, flip=args.flip, on_batch=bar.update)
        writer.write_shard(index, encoded.codes, encoded.labels, encoded.flipped, encoded.skipped)
    bar.close()
    elapsed = time.perf_counter() - started
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    manifest = writer.write_manifest({
        "num_classes": dataset.num_classes, "class_names": list(dataset.class_names),
        "tokenizer_dir": str(Path(args.tokenizer).resolve()),
    })
    summary = {
        "output_dir": args.output_dir, "count": manifest["count"], "skipped": manifest["num_skipped"],
        "shards": len(manifest["shards"]), "dtype": manifest["dtype"], "grid": manifest["grid_shapes"][0],
        "seconds": round(elapsed, 2), "images_per_s": round(todo / elapsed, 1) if elapsed > 0 and todo else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if manifest["num_skipped"]:
        first = ", ".join(f"{n}: {r}" for n, r in manifest["skipped"][:5])
        print(f"skipped {manifest['num_skipped']} unreadable inputs (first: {first}); all are listed in the manifest")
    print(json.dumps(summary))
    return manifest


if __name__ == "__main__":
    main()
