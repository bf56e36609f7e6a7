#!/usr/bin/env python
"""The demo: the whole two-stage flow on the built-in emoji set at 32x32, on CPU, in one command.

    python scripts/demo.py --output_dir outputs/demo

1. trains a VQ-GAN tokenizer (8x8 codes),            -> <output_dir>/tokenizer/, reconstructions.png
2. tokenizes the emoji (with mirrored copies),       -> <output_dir>/codes/
3. trains a GPT prior on the codes,                  -> <output_dir>/prior/
4. samples a grid through the pipeline,              -> <output_dir>/pipeline/, samples.png
5. evaluates reconstructions and samples             -> <output_dir>/metrics.json

`--quick` shrinks every stage to a few steps (for tests); the defaults take under 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from pipelines import ImageGenerationPipeline, TokenizeDatasetConfig, tokenize_dataset
from pipelines.evaluation import evaluate_generation, evaluate_tokenizer
from pipelines.decoder import load_decoder
from prior import GPTPrior
from pipelines.training import train_prior
from prior.training import TrainPriorConfig
from tokenizer import VQGAN, VQGANConfig
from tokenizer.data import ImageDataConfig, build_image_dataset
from tokenizer.discriminator import DiscriminatorConfig
from tokenizer.evaluation import save_reconstruction_grid
from tokenizer.losses import LossConfig
from tokenizer.quantizer import QuantizerConfig
from pipelines.training import train_tokenizer
from tokenizer.training import TrainTokenizerConfig


def tokenizer_config(output_dir: Path, steps: int) -> TrainTokenizerConfig:
    model = VQGANConfig(
        downsample_factor=4, resolution=32, channels=32, z_channels=32,
        quantizer=QuantizerConfig(codebook_size=256, code_dim=8, dead_code_threshold=1.0),
    )
    return TrainTokenizerConfig(
        output_dir=str(output_dir / "tokenizer"),
        data=ImageDataConfig(dataset="emoji", split="train", resolution=32, random_flip=True),
        model=model,
        loss=LossConfig(reconstruction_loss="l1", perceptual_loss="stlpips-alex", perceptual_weight=0.1,
                        gan_weight=0.1, disc_start_step=int(steps * 0.6)),
        discriminator=DiscriminatorConfig(channels=32, num_layers=2),
        max_steps=steps, batch_size=32, learning_rate=1e-3, lr_schedule="cosine", warmup_steps=min(50, steps // 4),
        num_workers=1, log_every=25, image_every=max(steps // 4, 1), checkpoint_every=max(steps // 2, 1),
        resume_from_checkpoint="latest",  # a second `make demo` continues (or reuses) the first one's run
    )


def tokenize_config(codes_dir: Path, max_images: int | None) -> TokenizeDatasetConfig:
    return TokenizeDatasetConfig(dataset="emoji", split="train", output_dir=str(codes_dir), max_images=max_images,
                                 flip=True, num_workers=1)


def prior_config(output_dir: Path, steps: int) -> TrainPriorConfig:
    return TrainPriorConfig(
        codes_dir=str(output_dir / "codes"), output_dir=str(output_dir / "prior"), prior="gpt", size="small",
        include_flipped=True, max_steps=steps, batch_size=32, learning_rate=1e-3, warmup_steps=min(100, steps // 4),
        ema_decay=0.0, eval_every=max(steps // 4, 1), sample_every=max(steps // 2, 1), checkpoint_every=max(steps // 2, 1),
        resume_from_checkpoint="latest",
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--tokenizer_steps", type=int, default=400)
    parser.add_argument("--prior_steps", type=int, default=900)
    parser.add_argument("--eval_images", type=int, default=150, help="held-out emoji for rFID and FID/KID")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokenizer_steps, args.prior_steps, args.eval_images = 2, 2, 0
    output = Path(args.output_dir)
    timings, started = {}, time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - started - sum(timings.values()), 1)

    torch.manual_seed(0)
    tokenizer_dir = train_tokenizer(tokenizer_config(output, args.tokenizer_steps))
    lap("train_tokenizer_s")
    tokenize_dataset(tokenizer_dir, tokenize_config(output / "codes", 64 if args.quick else None))
    lap("tokenize_s")
    prior_dir = train_prior(prior_config(output, args.prior_steps), load_decoder(tokenizer_dir))
    lap("train_prior_s")

    pipe = ImageGenerationPipeline(VQGAN.from_pretrained(tokenizer_dir), GPTPrior.from_pretrained(prior_dir))
    pipe.save_pretrained(output / "pipeline")
    samples = pipe(64, top_k=64, generator=torch.Generator().manual_seed(0), output_type="pt").images
    save_image(samples, output / "samples.png", nrow=8)
    test = ImageDataConfig(dataset="emoji", split="test", resolution=32)
    dataset = build_image_dataset(test)
    save_reconstruction_grid(pipe.tokenizer, torch.stack([dataset[i]["image"] for i in range(16)]), output / "reconstructions.png")
    lap("sample_s")

    metrics = {"tokenizer": evaluate_tokenizer(pipe.tokenizer, test, rfid=False, progress=False)}
    if args.eval_images > 0:
        metrics["tokenizer"]["rfid"] = evaluate_tokenizer(pipe.tokenizer, test, num_images=args.eval_images, progress=False)["rfid"]
        metrics["generation"] = evaluate_generation(pipe, test, num_images=args.eval_images, top_k=64, progress=False)
    lines = [json.loads(line) for line in (Path(prior_dir) / "metrics.jsonl").read_text().splitlines()]
    metrics["prior_val_bits_per_token"] = next((l["val_bits_per_token"] for l in reversed(lines) if l.get("val_bits_per_token")), None)
    lap("evaluate_s")
    metrics["timings"] = {**timings, "total_s": round(time.perf_counter() - started, 1)}
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    print(f"reconstructions: {output / 'reconstructions.png'} (top: held-out emoji, bottom: decoded from 8x8 codes)")
    print(f"samples:         {output / 'samples.png'} (64 emoji written by the GPT prior)")
    print(f"metrics:         {output / 'metrics.json'}")
    print(f"pipeline:        {output / 'pipeline'} (ImageGenerationPipeline.from_pretrained)")
    return metrics


if __name__ == "__main__":
    main()
