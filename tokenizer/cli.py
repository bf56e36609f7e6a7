"""Command-line flags of the tokenizer scripts and their mapping onto the typed configs."""

from __future__ import annotations

import argparse

from .data import ImageDataConfig
from .discriminator import DiscriminatorConfig
from .losses import GAN_LOSSES, RECONSTRUCTION_LOSSES, LossConfig
from .perceptual import PERCEPTUAL_LOSSES
from .quantizer import QuantizerConfig
from .training import LR_SCHEDULES, MIXED_PRECISION, TrainTokenizerConfig
from .vqgan import DOWNSAMPLE_FACTORS, VQGANConfig


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers such as 1,2,2") from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default="emoji",
                   help="built-in 'emoji' or 'fashion-mnist', a local image folder (class sub-folders become "
                        "labels), or a Hugging Face dataset name (default: emoji)")
    g.add_argument("--split", default="train", help="dataset split (default: train)")
    g.add_argument("--data_dir", default=None, help="override the built-in data location (e.g. the Fashion-MNIST IDX folder)")
    g.add_argument("--resolution", type=int, default=32, help="images are resized and centre-cropped to this size")
    g.add_argument("--resize_mode", choices=("crop", "pad"), default="crop",
                   help="crop: resize + centre-crop; pad: centre-pad smaller images (Fashion-MNIST 28 -> 32)")
    g.add_argument("--max_images", type=int, default=None, help="use only the first N images of the split")


def data_config(args: argparse.Namespace, random_flip: bool = False) -> ImageDataConfig:
    return ImageDataConfig(
        dataset=args.dataset, split=args.split, resolution=args.resolution, data_dir=args.data_dir,
        random_flip=random_flip, resize_mode=args.resize_mode, max_images=args.max_images,
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--random_flip", action="store_true", help="random horizontal flips")
    parser.add_argument("--output_dir", required=True, help="where checkpoints, metrics and the final model go")

    m = parser.add_argument_group("model")
    m.add_argument("--downsample_factor", type=int, choices=DOWNSAMPLE_FACTORS, default=4,
                   help="grid = resolution / factor (default 4: 32x32 images -> 8x8 codes)")
    m.add_argument("--channels", type=int, default=64, help="base width of encoder/decoder")
    m.add_argument("--channel_mult", type=_int_list, default=None,
                   help="width multipliers per level, log2(factor)+1 entries (default 1,2,2,4,4 truncated)")
    m.add_argument("--num_res_blocks", type=int, default=1)
    m.add_argument("--z_channels", type=int, default=64)
    m.add_argument("--attention", action="store_true", help="self-attention at the lowest resolution")
    m.add_argument("--dropout", type=float, default=0.0)

    q = parser.add_argument_group("quantiser")
    q.add_argument("--codebook_size", type=int, default=1024)
    q.add_argument("--code_dim", type=int, default=8, help="lookup dimension (LlamaGen uses 8)")
    q.add_argument("--beta", type=float, default=0.25, help="commitment weight")
    q.add_argument("--no_ema_codebook", action="store_true", help="learn the codebook by gradient instead of EMA")
    q.add_argument("--codebook_ema_decay", type=float, default=0.99)
    q.add_argument("--l2_normalize_codes", action="store_true")
    q.add_argument("--no_kmeans_init", action="store_true")
    q.add_argument("--dead_code_threshold", type=float, default=1.0, help="0 disables dead-code restarts")

    l = parser.add_argument_group("losses")
    l.add_argument("--reconstruction_loss", choices=RECONSTRUCTION_LOSSES, default="l1")
    l.add_argument("--perceptual_loss", choices=PERCEPTUAL_LOSSES, default="auto")
    l.add_argument("--perceptual_weight", type=float, default=1.0)
    l.add_argument("--gan_loss", choices=GAN_LOSSES, default="hinge")
    l.add_argument("--gan_weight", type=float, default=0.5, help="0 disables the discriminator")
    l.add_argument("--disc_start_step", type=int, default=2000)
    l.add_argument("--disc_layers", type=int, default=3)
    l.add_argument("--disc_channels", type=int, default=64)

    t = parser.add_argument_group("training")
    t.add_argument("--max_steps", type=int, default=10_000)
    t.add_argument("--batch_size", type=int, default=32, help="per process and micro-batch")
    t.add_argument("--gradient_accumulation_steps", type=int, default=1)
    t.add_argument("--learning_rate", type=float, default=2e-4)
    t.add_argument("--disc_learning_rate", type=float, default=None)
    t.add_argument("--weight_decay", type=float, default=0.0)
    t.add_argument("--lr_schedule", choices=tuple(LR_SCHEDULES), default="constant")
    t.add_argument("--warmup_steps", type=int, default=0)
    t.add_argument("--max_grad_norm", type=float, default=None)
    t.add_argument("--mixed_precision", choices=MIXED_PRECISION, default="no")
    t.add_argument("--ema_decay", type=float, default=0.0, help="EMA of weights (e.g. 0.999); 0 = off")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--num_workers", type=int, default=2)
    t.add_argument("--log_every", type=int, default=10)
    t.add_argument("--image_every", type=int, default=500, help="write a reconstruction grid every N steps")
    t.add_argument("--checkpoint_every", type=int, default=1000)
    t.add_argument("--checkpoints_total_limit", type=int, default=2)
    t.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder or 'latest'")
    t.add_argument("--no_progress", action="store_true", help="hide the progress bar")


def build_train_config(args: argparse.Namespace) -> TrainTokenizerConfig:
    quantizer = QuantizerConfig(
        codebook_size=args.codebook_size, code_dim=args.code_dim, beta=args.beta, use_ema=not args.no_ema_codebook,
        ema_decay=args.codebook_ema_decay, l2_normalize=args.l2_normalize_codes, kmeans_init=not args.no_kmeans_init,
        dead_code_threshold=args.dead_code_threshold,
    )
    model = VQGANConfig.with_downsample_factor(
        args.downsample_factor, args.channel_mult, resolution=args.resolution, channels=args.channels,
        num_res_blocks=args.num_res_blocks, z_channels=args.z_channels, use_attention=args.attention,
        dropout=args.dropout, quantizer=quantizer,
    )
    loss = LossConfig(
        reconstruction_loss=args.reconstruction_loss, perceptual_loss=args.perceptual_loss,
        perceptual_weight=args.perceptual_weight, gan_loss=args.gan_loss, gan_weight=args.gan_weight,
        disc_start_step=args.disc_start_step,
    )
    return TrainTokenizerConfig(
        output_dir=args.output_dir, data=data_config(args, args.random_flip), model=model, loss=loss,
        discriminator=DiscriminatorConfig(channels=args.disc_channels, num_layers=args.disc_layers),
        max_steps=args.max_steps, batch_size=args.batch_size, gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate, disc_learning_rate=args.disc_learning_rate, weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps, max_grad_norm=args.max_grad_norm,
        mixed_precision=args.mixed_precision, ema_decay=args.ema_decay, seed=args.seed, num_workers=args.num_workers,
        log_every=args.log_every, image_every=args.image_every, checkpoint_every=args.checkpoint_every,
        checkpoints_total_limit=args.checkpoints_total_limit, resume_from_checkpoint=args.resume_from_checkpoint,
        progress=not args.no_progress,
    )
