#!/usr/bin/env python
"""The demo: train a small VQ-GAN tokenizer on the built-in emoji set (32x32) for a few minutes on CPU,
then write a reconstruction grid of held-out emoji and their metrics.

    python scripts/demo.py --output_dir outputs/demo

Outputs: <output_dir>/tokenizer/ (the model), <output_dir>/reconstructions.png (top: test emoji,
bottom: reconstructions from 8x8 codes), <output_dir>/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tokenizer import VQGAN, VQGANConfig
from tokenizer.data import ImageDataConfig, build_image_dataset
from tokenizer.discriminator import DiscriminatorConfig
from tokenizer.evaluation import evaluate_tokenizer, save_reconstruction_grid
from tokenizer.losses import LossConfig
from tokenizer.quantizer import QuantizerConfig
from tokenizer.training import TrainTokenizerConfig, train_tokenizer


def demo_config(output_dir: Path, steps: int) -> TrainTokenizerConfig:
    model = VQGANConfig.with_downsample_factor(
        4, resolution=32, channels=32, z_channels=32,
        quantizer=QuantizerConfig(codebook_size=512, code_dim=8, dead_code_threshold=1.0),
    )
    return TrainTokenizerConfig(
        output_dir=str(output_dir / "tokenizer"),
        data=ImageDataConfig(dataset="emoji", split="train", resolution=32, random_flip=True),
        model=model,
        loss=LossConfig(reconstruction_loss="l1", perceptual_loss="stlpips-alex", perceptual_weight=0.1,
                        gan_weight=0.1, disc_start_step=int(steps * 0.6)),
        discriminator=DiscriminatorConfig(channels=32, num_layers=2),
        max_steps=steps,
        batch_size=32,
        learning_rate=1e-3,
        lr_schedule="cosine",
        warmup_steps=50,
        num_workers=1,
        log_every=25,
        image_every=max(steps // 4, 1),
        checkpoint_every=max(steps // 2, 1),
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--steps", type=int, default=800, help="training steps (about 3 minutes on 2 CPU cores)")
    parser.add_argument("--rfid_images", type=int, default=200, help="held-out emoji for rFID, 0 = skip (Inception is slow on CPU)")
    args = parser.parse_args(argv)
    output = Path(args.output_dir)

    torch.manual_seed(0)
    start = time.perf_counter()
    tokenizer_dir = train_tokenizer(demo_config(output, args.steps))
    train_seconds = time.perf_counter() - start

    model = VQGAN.from_pretrained(tokenizer_dir)
    test = ImageDataConfig(dataset="emoji", split="test", resolution=32)
    metrics = evaluate_tokenizer(model, test, rfid=False)
    if args.rfid_images > 0:
        metrics["rfid"] = evaluate_tokenizer(model, test, num_images=args.rfid_images)["rfid"]
    metrics.update(train_seconds=train_seconds, train_steps=args.steps, rfid_images=args.rfid_images)

    dataset = build_image_dataset(test)
    save_reconstruction_grid(model, torch.stack([dataset[i]["image"] for i in range(16)]), output / "reconstructions.png")
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    print(f"tokenizer:       {tokenizer_dir}")
    print(f"reconstructions: {output / 'reconstructions.png'} (top: held-out emoji, bottom: decoded from 8x8 codes)")
    print(f"metrics:         {output / 'metrics.json'}")
    return metrics


if __name__ == "__main__":
    main()
