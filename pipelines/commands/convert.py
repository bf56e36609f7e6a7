"""`tessera convert`: convert a published tokenizer into a Tessera tokenizer folder (config.json + model.safetensors), weight for
weight: then tessera tokenize, train-prior, evaluate, the pipeline, and fine-tuning with
tessera train-tokenizer --init_from DIR all take it like one trained here.

Sources (a local path, or a Hugging Face Hub repo id):
  diffusers  a diffusers VQModel folder or repo (--subfolder where the repo keeps it, e.g. amused/amused-256 vqvae)
  taming     a taming-transformers VQGAN Lightning .ckpt (--config its model YAML: optional, checked when given)
  llamagen   a LlamaGen VQ .pt (VQ-16, VQ-8: vq_ds16_c2i.pt, vq_ds8_c2i.pt; --weights ema for its EMA weights)
  janus      a transformers JanusVQVAE folder, or a whole Janus model folder (only its tokenizer is read)

    tessera convert --source llamagen vq_ds16_c2i.pt --output_dir tokenizers/llamagen-vq16
    tessera convert --source taming last.ckpt --config model.yaml --output_dir tokenizers/taming-f16
    tessera convert --source diffusers amused/amused-256 --subfolder vqvae --output_dir tokenizers/amused
    tessera convert --source llamagen FoundationVision/LlamaGen --filename vq_ds16_c2i.pt ...

PyTorch files are read with torch.load(weights_only=True): nothing pickled is executed, and a file that needs
more is refused with the way to re-save its weights. Every weight of the source must find its place and every
Tessera weight must be filled (only losses, discriminators and usage counters are dropped, by name). Prints the
converted config as JSON; writes converted_from.json beside the model (the source and options).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from tokenizer.conversion import SOURCES, read_foreign


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=SOURCES, help="the format of SOURCE")
    parser.add_argument("path", metavar="SOURCE", help="a local file or folder, or a Hugging Face Hub repo id")
    parser.add_argument("--output_dir", required=True, help="the Tessera tokenizer folder to write")
    parser.add_argument("--config", default=None, help="taming: the model YAML (a path, or its name in the Hub repo)")
    parser.add_argument("--filename", default=None, help="taming, llamagen: the checkpoint's file name in a Hub repo")
    parser.add_argument("--subfolder", default="", help="diffusers: the VQModel's folder inside the repo (e.g. vqvae)")
    parser.add_argument("--weights", choices=("model", "ema"), default="model",
                        help="llamagen: which weights of the checkpoint (its sample scripts use 'model')")
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
    foreign = read_foreign(args.source, args.path, **options)
    if args.resolution is not None:
        autoencoder = dataclasses.replace(foreign.config.autoencoder, resolution=args.resolution)
        foreign.config = dataclasses.replace(foreign.config, autoencoder=autoencoder)
    model = foreign.to_tessera()
    output = Path(args.output_dir)
    model.save_pretrained(output)
    record = {"source": args.source, "path": str(args.path),
              **{k: v for k, v in options.items() if v not in (None, "", False) and k != "cache_dir"}}
    (output / "converted_from.json").write_text(json.dumps(record, indent=2) + "\n")
    summary = {"output_dir": str(output), "converted_from": record,
               "parameters": sum(p.numel() for p in model.parameters()),
               "grid": list(model.config.grid_shapes[0]), "codebook_size": model.config.codebook_size,
               "config": model.config.fingerprint_dict()}
    print(json.dumps(summary, indent=2))
    return summary
