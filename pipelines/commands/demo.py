"""`tessera demo`: the whole two-stage flow on the built-in emoji set at 32x32, on CPU, in one command.

    tessera demo --output_dir outputs/demo

1. trains a VQ-GAN tokenizer (8x8 codes),            -> <output_dir>/tokenizer/, reconstructions.png
2. tokenizes the emoji (with mirrored copies),       -> <output_dir>/codes/
3. trains a GPT prior on the codes,                  -> <output_dir>/prior/
4. samples a grid through the pipeline,              -> <output_dir>/pipeline/, samples.png
5. evaluates reconstructions and samples             -> <output_dir>/metrics.json

`--quick` shrinks every stage to a few steps (for tests); the defaults aim at 20 minutes on 2 cores
(README, "Two commands").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.cli import int_at_least, positive_int
from pipelines.demo import EVAL_IMAGES, PRIOR_STEPS, TOKENIZER_STEPS, run_demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo", help="where everything goes (default: outputs/demo)")
    parser.add_argument("--tokenizer_steps", type=positive_int, default=TOKENIZER_STEPS,
                        help=f"tokenizer training steps (default: {TOKENIZER_STEPS})")
    parser.add_argument("--prior_steps", type=positive_int, default=PRIOR_STEPS,
                        help=f"prior training steps (default: {PRIOR_STEPS})")
    parser.add_argument("--eval_images", type=int_at_least(0), default=EVAL_IMAGES,
                        help="samples and held-out emoji for the demo's quick FID/KID check (the protocol: 2,000); "
                             "0 skips it")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage (smoke test)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    metrics = run_demo(args.output_dir, args.tokenizer_steps, args.prior_steps, args.eval_images, quick=args.quick)
    output = Path(args.output_dir)
    print(json.dumps(metrics, indent=2))
    print(f"reconstructions: {output / 'reconstructions.png'} (top: held-out emoji, bottom: decoded from 8x8 codes)")
    print(f"samples:         {output / 'samples.png'} (64 emoji written by the GPT prior)")
    print(f"metrics:         {output / 'metrics.json'}")
    if "generation" in metrics:
        g = metrics["generation"]
        print(f"quick check on {g['num_images']} samples: FID {g['fid']:.1f} (two real sets: "
              f"{g['floor']['real']['fid']:.1f}, the tokenizer's reconstructions: {g['floor']['tokenizer']['fid']:.1f}); "
              f"quality claims use 2,000 samples: tessera evaluate --pipeline {output / 'pipeline'} --dataset emoji")
    print(f"pipeline:        {output / 'pipeline'} (ImageGenerationPipeline.from_pretrained)")
    return metrics
