"""`tessera convert`: convert a published tokenizer or prior into a Tessera folder (config.json +
model.safetensors), weight for weight: then tessera tokenize, train-prior, evaluate, the pipeline, and
fine-tuning (train-tokenizer / train-prior --init_from DIR) all take it like one trained here.

Sources (a local path, or a Hugging Face Hub repo id):
  diffusers     a diffusers VQModel folder or repo (--subfolder where the repo keeps it, e.g. amused/amused-256 vqvae)
  taming        a taming-transformers VQGAN Lightning .ckpt (--config its model YAML: optional, checked when given)
  llamagen      a LlamaGen VQ .pt (VQ-16, VQ-8: vq_ds16_c2i.pt, vq_ds8_c2i.pt; --weights ema for its EMA weights)
  janus         a transformers JanusVQVAE folder, or a whole Janus model folder (only its tokenizer is read)
  llamagen-gpt  a LlamaGen class-to-image GPT .pt (c2i_B_256.pt ... c2i_3B_384.pt) -> a GPT prior over LlamaGen
                VQ-16 codes (the grid from the file name's image size or --grid_size; heads from LlamaGen's size
                table or --num_heads; 1,000 classes get the ImageNet names)

    tessera convert --source llamagen vq_ds16_c2i.pt --output_dir tokenizers/llamagen-vq16
    tessera convert --source llamagen-gpt c2i_B_256.pt --output_dir priors/llamagen-gpt-b
    tessera convert --source taming last.ckpt --config model.yaml --output_dir tokenizers/taming-f16
    tessera convert --source diffusers amused/amused-256 --subfolder vqvae --output_dir tokenizers/amused
    tessera convert --source llamagen FoundationVision/LlamaGen --filename vq_ds16_c2i.pt ...

PyTorch files are read with torch.load(weights_only=True): nothing pickled is executed, and a file that needs
more is refused with the way to re-save its weights. Every weight of the source must find its place and every
Tessera weight must be filled (only losses, discriminators and usage counters are dropped, by name). Prints the
converted config as JSON; config.json records the source and options under "converted_from".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from tessera_hub.foreign_files import foreign_checkpoint
from tokenizer.conversion import SOURCES, read_foreign

PRIOR_SOURCES = ("llamagen-gpt",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=SOURCES + PRIOR_SOURCES,
                        help="the format of SOURCE")
    parser.add_argument("path", metavar="SOURCE", help="a local file or folder, or a Hugging Face Hub repo id")
    parser.add_argument("--output_dir", required=True, help="the Tessera tokenizer folder to write")
    parser.add_argument("--config", default=None, help="taming: the model YAML (a path, or its name in the Hub repo)")
    parser.add_argument("--filename", default=None,
                        help="taming, llamagen, llamagen-gpt: the checkpoint's file name in a Hub repo")
    parser.add_argument("--subfolder", default="", help="diffusers: the VQModel's folder inside the repo (e.g. vqvae)")
    parser.add_argument("--weights", choices=("model", "ema"), default="model",
                        help="llamagen, llamagen-gpt: which weights of the checkpoint (its sample scripts use 'model')")
    parser.add_argument("--grid_size", type=int, default=None,
                        help="llamagen-gpt: the code grid's side (image side / 16; default: from the file name, "
                             "c2i_B_256.pt -> 16)")
    parser.add_argument("--num_heads", type=int, default=None,
                        help="llamagen-gpt: attention heads (default: LlamaGen's size table)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="the image side recorded in the config (default: the source's training resolution); "
                             "the network is convolutional and encodes any multiple of its downsample factor")
    hub = parser.add_argument_group("Hugging Face Hub")
    hub.add_argument("--revision", default=None, help="a branch, tag or commit of the Hub repo")
    hub.add_argument("--cache_dir", default=None, help="the Hugging Face cache folder (default: its own default)")
    hub.add_argument("--local_files_only", action="store_true", help="use the local Hub cache only")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options = dict(config=args.config, filename=args.filename, subfolder=args.subfolder, weights=args.weights,
                   revision=args.revision, cache_dir=args.cache_dir, local_files_only=args.local_files_only)
    if args.source in PRIOR_SOURCES:
        model = convert_prior(args)
        options |= dict(grid_size=args.grid_size, num_heads=args.num_heads)
        grid, config = model.config.grid_shape, model.config.to_dict()
    else:
        foreign = read_foreign(args.source, args.path, **options)
        if args.resolution is not None:
            autoencoder = dataclasses.replace(foreign.config.autoencoder, resolution=args.resolution)
            foreign.config = dataclasses.replace(foreign.config, autoencoder=autoencoder)
        model = foreign.to_tessera()
        grid, config = model.config.grid_shapes[0], model.config.fingerprint_dict()
    model.converted_from = {"source": args.source, "path": str(args.path),
                            **{k: v for k, v in options.items() if v not in (None, "", False) and k != "cache_dir"}}
    output = Path(args.output_dir)
    model.save_pretrained(output)
    config.pop("class_names", None)  # 1,000 ImageNet names would bury the rest
    summary = {"output_dir": str(output), "converted_from": model.converted_from,
               "parameters": sum(p.numel() for p in model.parameters()),
               "grid": list(grid), "codebook_size": model.config.codebook_size, "config": config}
    print(json.dumps(summary, indent=2))
    return summary


def convert_prior(args: argparse.Namespace):
    """A published prior file (local, or `--filename` in a Hub repo) as a Tessera prior."""
    from prior.llamagen import read_llamagen_gpt

    if args.config is not None or args.subfolder or args.resolution is not None:
        raise ValueError("--config, --subfolder and --resolution are for tokenizers; a llamagen-gpt prior takes "
                         "--grid_size and --num_heads")
    checkpoint, _ = foreign_checkpoint(args.path, args.filename, revision=args.revision, cache_dir=args.cache_dir,
                                       local_files_only=args.local_files_only)
    return read_llamagen_gpt(checkpoint, grid_size=args.grid_size, num_heads=args.num_heads, weights=args.weights)
