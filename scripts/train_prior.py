#!/usr/bin/env python
"""Train a GPT or PixelCNN prior over code indices written by tokenize_dataset.py.

    python scripts/train_prior.py --codes codes/fmnist-train --prior gpt --size small --output_dir runs/fmnist-gpt
    accelerate launch scripts/train_prior.py --codes codes/fmnist-train --prior gpt --size base \
        --mixed_precision bf16 --tokenizer runs/fmnist-vq --output_dir runs/fmnist-gpt-b

Writes metrics.jsonl (training and validation bits per token), samples/samples_*.png when --tokenizer is
given, checkpoints/checkpoint-<step>/ and, at the end, config.json + model.safetensors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.decoder import load_decoder
from prior.gpt import GPT_PRESETS
from prior.pixelcnn import PIXELCNN_PRESETS
from prior.training import LR_SCHEDULES, PRIORS, TrainPriorConfig, train_prior


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", required=True, help="codes folder written by scripts/tokenize_dataset.py")
    parser.add_argument("--prior", choices=sorted(PRIORS), default="gpt")
    parser.add_argument("--size", default="small",
                        help=f"size preset: gpt {sorted(GPT_PRESETS)}, pixelcnn {sorted(PIXELCNN_PRESETS)}")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--tokenizer", default=None, help="the tokenizer that made the codes: enables sample grids")
    parser.add_argument("--validation_fraction", type=float, default=0.05)
    parser.add_argument("--include_flipped", action="store_true", help="also train on mirrored codes (tokenized with --flip)")
    parser.add_argument("--class_dropout", type=float, default=0.1, help="label drop probability (classifier-free guidance)")
    parser.add_argument("--max_steps", type=int, default=10_000)
    parser.add_argument("--batch_size", type=int, default=64, help="per process and micro-batch")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--weight_decay", type=float, default=0.05, help="applied to matrices only")
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--lr_schedule", choices=tuple(LR_SCHEDULES), default="cosine")
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--ema_decay", type=float, default=0.0, help="EMA of weights (e.g. 0.999); 0 = off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log_every", type=int, default=10)
    parser.add_argument("--eval_every", type=int, default=500)
    parser.add_argument("--eval_batches", type=int, default=20, help="validation batches per evaluation; 0 = all")
    parser.add_argument("--sample_every", type=int, default=1000)
    parser.add_argument("--checkpoint_every", type=int, default=1000)
    parser.add_argument("--checkpoints_total_limit", type=int, default=2)
    parser.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder or 'latest'")
    parser.add_argument("--no_progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    config = TrainPriorConfig(
        codes_dir=args.codes, output_dir=args.output_dir, prior=args.prior, size=args.size,
        validation_fraction=args.validation_fraction, include_flipped=args.include_flipped,
        class_dropout=args.class_dropout, max_steps=args.max_steps, batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps, learning_rate=args.learning_rate,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, lr_schedule=args.lr_schedule,
        max_grad_norm=args.max_grad_norm, mixed_precision=args.mixed_precision, ema_decay=args.ema_decay,
        seed=args.seed, log_every=args.log_every, eval_every=args.eval_every, eval_batches=args.eval_batches,
        sample_every=args.sample_every, checkpoint_every=args.checkpoint_every,
        checkpoints_total_limit=args.checkpoints_total_limit, resume_from_checkpoint=args.resume_from_checkpoint,
        progress=not args.no_progress,
    )
    decoder = load_decoder(args.tokenizer) if args.tokenizer else None
    output = train_prior(config, decoder)
    print(f"saved {args.prior} prior to {output}")
    return output


if __name__ == "__main__":
    main()
