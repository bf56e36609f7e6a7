#!/usr/bin/env python
"""Generate images with a trained tokenizer + prior and write them as a PNG grid.

    python scripts/sample.py --pipeline runs/fmnist-pipeline --num_images 64 --class_label Sneaker \
        --guidance_scale 2.0 --top_k 100 --seed 0 --out grid.png --out_dir samples/
    python scripts/sample.py --tokenizer runs/fmnist-vq --prior runs/fmnist-gpt --num_images 16 --out grid.png
    python scripts/sample.py --tokenizer runs/fmnist-vqvae2 --prior runs/top-gpt --bottom_prior runs/bottom-gpt
    python scripts/sample.py --tokenizer runs/fmnist-vae --temperature 0.8

A two-level (VQ-VAE-2) tokenizer takes the top grid's prior as --prior and the bottom grid's as --bottom_prior.
A vae takes no prior: its latents come from N(0, I), their spread scaled by --temperature.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torchvision.utils import save_image

from pipelines.cli import output_file, positive_int, run_command
from pipelines.generation import PRIOR_CLASSES, ImageGenerationPipeline
from tokenizer import load_tokenizer


def load_pipeline(args: argparse.Namespace) -> ImageGenerationPipeline:
    if args.pipeline:
        return ImageGenerationPipeline.from_pretrained(args.pipeline)
    if not args.tokenizer:
        raise ValueError("give --pipeline DIR, or --tokenizer DIR with its --prior DIR (none for a vae)")
    priors = [load_prior(Path(folder)) if folder else None for folder in (args.prior, args.bottom_prior)]
    return ImageGenerationPipeline(load_tokenizer(args.tokenizer), *priors)


def load_prior(folder: Path) -> torch.nn.Module:
    config = json_config(folder)
    prior_cls = PRIOR_CLASSES.get(config.get("prior_type"))
    if prior_cls is None:
        raise ValueError(f"{folder}/config.json names prior type {config.get('prior_type')!r}; "
                         f"expected one of {sorted(PRIOR_CLASSES)}")
    return prior_cls.from_pretrained(folder)


def json_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: expected a prior folder")
    return json.loads(path.read_text())


def parse_label(text: str):
    return int(text) if text.lstrip("-").isdigit() else text


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=None, help="folder written by ImageGenerationPipeline.save_pretrained")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer folder (with --prior, instead of --pipeline; a vae needs no prior)")
    parser.add_argument("--prior", default=None, help="prior folder (with --tokenizer); a two-level tokenizer's top prior")
    parser.add_argument("--bottom_prior", default=None, help="a two-level tokenizer's bottom prior folder")
    parser.add_argument("--num_images", type=positive_int, default=16)
    parser.add_argument("--class_label", nargs="+", type=parse_label, default=None,
                        help="one class (index or name) for all images, or one per image")
    parser.add_argument("--guidance_scale", type=float, default=1.0, help="classifier-free guidance; 1.0 = off")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_k", type=positive_int, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=positive_int, default=64, help="images sampled at once (bounds memory)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true",
                        help="sample GPT priors through their compiled decode step (CUDA graphs on a GPU; the first "
                             "batch pays the compilation)")
    parser.add_argument("--out", default="grid.png", help="PNG grid of all images")
    parser.add_argument("--out_dir", default=None, help="also write one PNG per image here")
    parser.add_argument("--nrow", type=positive_int, default=8)
    args = parser.parse_args(argv)
    out = output_file(args.out, "--out")  # checked before minutes of sampling, not after
    if args.out_dir:
        output_file(Path(args.out_dir) / "00000.png", "--out_dir")

    pipe = load_pipeline(args).to(args.device)
    labels = args.class_label
    if labels is not None and len(labels) == 1:
        labels = labels[0]
    generator = torch.Generator(args.device).manual_seed(args.seed)
    images = pipe(args.num_images, class_labels=labels, temperature=args.temperature, top_k=args.top_k,
                  top_p=args.top_p, guidance_scale=args.guidance_scale, generator=generator, output_type="pt",
                  batch_size=args.batch_size, compile=args.compile, progress=True).images
    save_image(images, out, nrow=args.nrow)
    written = [out]
    if args.out_dir:  # the folder was made (and checked) before sampling
        for i, image in enumerate(images):
            save_image(image, Path(args.out_dir) / f"{i:05d}.png")
            written.append(Path(args.out_dir) / f"{i:05d}.png")
    print(f"wrote {args.out}" + (f" and {args.num_images} images in {args.out_dir}" if args.out_dir else ""))
    return written


if __name__ == "__main__":
    run_command(main)
