"""Flags more than one subcommand takes (sample, evaluate, app): which model, how to sample, which device."""

from __future__ import annotations

import argparse

import torch

from pipelines.cli import positive_int
from pipelines.generation import ImageGenerationPipeline, load_pipeline


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """--pipeline DIR, or --tokenizer DIR with --prior DIR (and --bottom_prior DIR for two levels)."""
    group = parser.add_argument_group("model: a pipeline folder, or a tokenizer folder with its prior folders")
    group.add_argument("--pipeline", default=None,
                       help="pipeline folder or Hub id (ImageGenerationPipeline.save_pretrained, tessera sample "
                            "--save_pipeline), or a vae's own folder")
    group.add_argument("--tokenizer", default=None,
                       help="tokenizer folder or Hub id, instead of --pipeline (with --prior; a vae needs none)")
    group.add_argument("--prior", default=None,
                       help="prior folder written by tessera train-prior (with --tokenizer); a two-level "
                            "tokenizer's top prior")
    group.add_argument("--bottom_prior", default=None, help="a two-level tokenizer's bottom prior folder")


def pipeline_from_args(args: argparse.Namespace) -> ImageGenerationPipeline:
    """The pipeline the model flags name, on --device."""
    pipe = load_pipeline(args.pipeline, tokenizer=args.tokenizer, prior=args.prior, bottom_prior=args.bottom_prior)
    return pipe.to(args.device)


def parse_label(text: str) -> int | str:
    """A class given on the command line: an index, or a name (or 'uniform')."""
    return int(text) if text.lstrip("-").isdigit() else text


def add_sampling_flags(group: argparse._ArgumentGroup) -> None:
    """The pipeline call's sampling settings (defaults: plain ancestral sampling)."""
    group.add_argument("--guidance_scale", type=float, default=1.0,
                       help="classifier-free guidance scale; 1.0 = off (default: 1.0)")
    group.add_argument("--temperature", type=float, default=1.0,
                       help="softmax temperature of the prior (a vae: the spread of its latents) (default: 1.0)")
    group.add_argument("--top_k", type=positive_int, default=None, help="draw only from the k likeliest codes")
    group.add_argument("--top_p", type=float, default=None,
                       help="draw only from the likeliest codes whose probabilities add up to p (nucleus)")
    group.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default: 0)")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default, help=f"where the models run (default: {default})")
