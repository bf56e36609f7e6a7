#!/usr/bin/env python
"""Train a VQ-GAN image tokenizer.

Runs under plain `python` and under `accelerate launch` (several processes / GPUs):

    python scripts/train_tokenizer.py --dataset emoji --resolution 32 --output_dir runs/emoji-vq
    accelerate launch scripts/train_tokenizer.py --dataset fashion-mnist --resize_mode pad --mixed_precision bf16 ...

Writes metrics.jsonl, images/reconstructions_*.png, checkpoints/checkpoint-<step>/ and, at the end,
config.json + model.safetensors (load with tokenizer.VQGAN.from_pretrained(output_dir)).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenizer.cli import add_train_arguments, build_train_config
from tokenizer.training import train_tokenizer


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    output = train_tokenizer(build_train_config(args))
    print(f"saved tokenizer to {output}")
    return output


if __name__ == "__main__":
    main()
