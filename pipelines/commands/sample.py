r"""`tessera sample`: generate images with a trained tokenizer + prior and write them as a PNG grid.

    tessera sample --pipeline runs/fmnist-pipeline --num_images 64 --class_label Sneaker \
        --guidance_scale 2.0 --top_k 100 --seed 0 --out grid.png --out_dir samples/
    tessera sample --tokenizer runs/fmnist-vq --prior runs/fmnist-gpt --num_images 16 --out grid.png \
        --save_pipeline runs/fmnist-pipeline
    tessera sample --tokenizer runs/fmnist-vqvae2 --prior runs/top-gpt --bottom_prior runs/bottom-gpt
    tessera sample --tokenizer runs/fmnist-vae --temperature 0.8

A two-level (VQ-VAE-2) tokenizer takes the top grid's prior as --prior and the bottom grid's as --bottom_prior.
A vae takes no prior: its latents come from N(0, I), their spread scaled by --temperature. `--save_pipeline DIR`
writes the tokenizer and its priors as one pipeline folder (for tessera evaluate --pipeline, tessera app, Python).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image

from pipelines.cli import output_file, positive_int
from pipelines.commands.common import (
    add_device_flag, add_model_flags, add_sampling_flags, parse_label, pipeline_from_args,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(parser)
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--num_images", type=positive_int, default=16, help="images to draw (default: 16)")
    sampling.add_argument("--class_label", nargs="+", type=parse_label, default=None,
                          help="one class (index or name) for all images, or one per image")
    add_sampling_flags(sampling)
    sampling.add_argument("--batch_size", type=positive_int, default=64,
                          help="images sampled at once (bounds memory) (default: 64)")
    sampling.add_argument("--compile", action="store_true",
                          help="sample GPT priors through their compiled decode step (CUDA graphs on a GPU; the "
                               "first batch pays the compilation)")
    sampling.add_argument("--no_progress", action="store_true", help="no progress bar while sampling")
    add_device_flag(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--out", default="grid.png", help="PNG grid of all images (default: grid.png)")
    output.add_argument("--out_dir", default=None, help="also write one PNG per image here")
    output.add_argument("--nrow", type=positive_int, default=8, help="images per row of the grid (default: 8)")
    output.add_argument("--save_pipeline", default=None, metavar="DIR",
                        help="also write the tokenizer and its priors as one pipeline folder here")
    return parser


def main(argv: list[str] | None = None) -> list[Path]:
    args = build_parser().parse_args(argv)
    out = output_file(args.out, "--out")  # checked before minutes of sampling, not after
    if args.out_dir:
        output_file(Path(args.out_dir) / "00000.png", "--out_dir")
    pipe = pipeline_from_args(args)
    if args.save_pipeline:
        pipe.save_pretrained(args.save_pipeline)
        print(f"saved the pipeline to {args.save_pipeline}")
    labels = args.class_label
    if labels is not None and len(labels) == 1:
        labels = labels[0]
    generator = torch.Generator(args.device).manual_seed(args.seed)
    images = pipe(args.num_images, class_labels=labels, temperature=args.temperature, top_k=args.top_k,
                  top_p=args.top_p, guidance_scale=args.guidance_scale, generator=generator, output_type="pt",
                  batch_size=args.batch_size, compile=args.compile, progress=not args.no_progress).images
    save_image(images, out, nrow=args.nrow)
    written = [out]
    if args.out_dir:  # the folder was made (and checked) before sampling
        for i, image in enumerate(images):
            save_image(image, Path(args.out_dir) / f"{i:05d}.png")
            written.append(Path(args.out_dir) / f"{i:05d}.png")
    print(f"wrote {args.out}" + (f" and {args.num_images} images in {args.out_dir}" if args.out_dir else ""))
    return written
