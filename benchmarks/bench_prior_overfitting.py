#!/usr/bin/env python
"""Benchmark: the usual remedies against a prior overfitting a small codes set, measured on validation bits/token.

Trains the same GPT prior on the same codes once per variant and reads each run's metrics.jsonl:

  baseline         no dropout, no EMA, no early stopping
  dropout          --dropout (token-embedding and attention dropout)
  ema              --ema_decay (the EMA is validated and saved)
  early-stopping   --early_stopping_patience (the best validation weights become the prior)
  all              the three together

Reports, per variant: training bits/token (mean of the last 5 logs), validation bits/token of the last
evaluation, of the best one and of the saved prior (the best under early stopping, else the last), the gap
(saved validation minus training), the steps actually run and the wall time. Lower
validation bits/token is a better prior of held-out grids; the gap is the overfitting. Prints JSON and writes
<output_dir>/results.json. A variant whose folder holds result.json is read back, not trained again.

    python benchmarks/bench_prior_overfitting.py --codes outputs/emoji-codes --steps 900 --output_dir outputs/overfit
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from pipelines.cli import comma_choices, emit_json
from pipelines.training import train_prior
from pipelines.training_run import read_metrics
from prior.training import TrainPriorConfig

VARIANTS = {
    "baseline": {},
    "dropout": {"dropout": 0.1},
    # 0.99, not the 0.999+ of long runs: over ~1,000 steps a 0.999 average still holds ~40% of the initial weights.
    "ema": {"ema_decay": 0.99},
    "early-stopping": {"early_stopping_patience": 3},
    "all": {"dropout": 0.1, "ema_decay": 0.99, "early_stopping_patience": 3},
}


def run_variant(name: str, config: TrainPriorConfig) -> dict:
    run_dir = Path(config.output_dir)
    done = run_dir / "result.json"
    if done.is_file():
        result = json.loads(done.read_text())
        if result["max_steps"] != config.max_steps:
            raise ValueError(f"{run_dir} holds a {result['max_steps']}-step run; this benchmark asks for "
                             f"{config.max_steps}: delete the folder or choose another --output_dir")
        return result
    started = time.perf_counter()
    train_prior(config)
    seconds = time.perf_counter() - started
    records = read_metrics(run_dir)
    train = [r["bits_per_token"] for r in records if "bits_per_token" in r][-5:]
    val = [r["val_bits_per_token"] for r in records if r.get("val_bits_per_token") is not None]
    # The saved prior: the best validation weights under early stopping, else the last ones.
    saved = min(val) if config.early_stopping_patience else val[-1]
    result = {
        "name": name, "settings": VARIANTS[name], "max_steps": config.max_steps, "steps_run": records[-1]["step"],
        "seconds": round(seconds, 1), "train_bits_per_token": sum(train) / len(train),
        "val_bits_per_token_last": val[-1], "val_bits_per_token_best": min(val),
        "val_bits_per_token_saved": saved, "gap": saved - sum(train) / len(train),
    }
    done.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", required=True, help="a codes folder (scripts/tokenize_dataset.py)")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--include_flipped", action="store_true", help="also train on the mirrored codes")
    parser.add_argument("--variants", type=comma_choices(VARIANTS), default=",".join(VARIANTS),
                        help=f"some of {list(VARIANTS)}")
    parser.add_argument("--output_dir", default="outputs/overfit")
    args = parser.parse_args(argv)
    names = args.variants
    out = Path(args.output_dir)
    base = TrainPriorConfig(
        codes_dir=args.codes, output_dir="", prior="gpt", size=args.size, include_flipped=args.include_flipped,
        max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        warmup_steps=min(100, args.steps // 4), eval_every=args.eval_every, eval_batches=0,
        sample_every=args.steps, checkpoint_every=args.steps, progress=False,
    )
    results = {}
    for name in names:
        torch.manual_seed(0)
        config = dataclasses.replace(base, output_dir=str(out / name), **VARIANTS[name])
        results[name] = run_variant(name, config)
    summary = {
        "setup": {"codes": args.codes, "size": args.size, "steps": args.steps, "batch_size": args.batch_size,
                  "learning_rate": args.learning_rate, "eval_every": args.eval_every,
                  "include_flipped": args.include_flipped, "threads": torch.get_num_threads()},
        "results": results,
        "best_validation": min(results, key=lambda n: results[n]["val_bits_per_token_saved"]),
    }
    emit_json(summary, out / "results.json")
    return summary


if __name__ == "__main__":
    main()
