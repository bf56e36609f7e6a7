r"""`tessera tokenize`: encode a whole dataset split into code-index files with a trained tokenizer.

    tessera tokenize --tokenizer runs/fmnist-vq --dataset fashion-mnist --resize_mode pad \
        --split train --output_dir codes/fmnist-train --flip
    accelerate launch --num_processes 2 scripts/tokenize_dataset.py ...   # each process writes its own shards

Writes sharded .npy code arrays (uint16 for codebooks up to 65,536 entries), labels when the data set has
them, and manifest.json (codebook size, grid, count, labels and class names, per-shard checksums, the
tokenizer's fingerprint, source, skipped inputs). Killed and started again with the same arguments, it
keeps the finished shards and redoes the rest. Read the result with prior.CodesDataset(output_dir).
Every flag but --tokenizer is a field of pipelines.TokenizeDatasetConfig (defaults live there); `--config FILE`
starts from a saved config and flags beside it override it.
"""

from __future__ import annotations

from pipelines.cli import config_parser, parse_config
from pipelines.dataset_tokenizing import TokenizeDatasetConfig, tokenize_dataset


RESUME_HINT = "run the same command again: it keeps the finished shards and writes the rest"


def build_parser():
    parser = config_parser(TokenizeDatasetConfig, __doc__, default_group="tokenizing")
    parser.add_argument("--tokenizer", required=True,
                        help="tokenizer folder or Hub id (written by tessera train-tokenizer or tessera convert)")
    return parser


def main(argv: list[str] | None = None) -> dict | None:
    config, args = parse_config(TokenizeDatasetConfig, build_parser(), argv)
    return tokenize_dataset(args.tokenizer, config)
