"""`tessera train-tokenizer`: train an image tokenizer: a VQ-GAN (the default), a two-level VQ-VAE-2 with `--architecture vqvae2` (its
top codebook takes the quantiser flags with `top_` in front: --top_codebook_size, --top_code_dim, ...), or the plain
VAE with `--architecture vae` (a Gaussian latent of --latent_channels per cell, KL weighted by --kl_weight; the
same losses and flags otherwise, and it generates by itself: tessera sample --tokenizer DIR).

Runs under plain `python` and under `accelerate launch` (several processes / GPUs):

    tessera train-tokenizer --dataset emoji --resolution 32 --output_dir runs/emoji-vq
    tessera train-tokenizer --architecture vqvae2 --dataset emoji --output_dir runs/emoji-vqvae2
    tessera train-tokenizer --architecture vae --dataset emoji --output_dir runs/emoji-vae
    accelerate launch scripts/train_tokenizer.py --dataset fashion-mnist --resize_mode pad --mixed_precision bf16 ...
    tessera train-tokenizer --config runs/emoji-vq/train_config.json --output_dir runs/emoji-vq-2 --max_steps 20000

Every flag is a field of tokenizer.training.TrainTokenizerConfig (defaults live there). `--config FILE` starts from
a saved config, such as the train_config.json every run writes; flags beside it override it. `--preset NAME`
starts from a named recipe (tokenizer/training/presets.py: small-32px, imagenet-vq16 = LlamaGen's VQ-16) under both:

    tessera train-tokenizer --preset imagenet-vq16 --dataset imagenet-1k --output_dir runs/vq16

Writes metrics.jsonl and curves.png (losses, PSNR, codebook usage and perplexity per level or a vae's KL in nats
per image, learning rate), images/reconstructions_*.png, checkpoints/checkpoint_<step>/ and, at the end, config.json
+ model.safetensors (load with tokenizer.load_tokenizer(output_dir), or VQGAN / VQVAE2 / VAE.from_pretrained). `--report_to tensorboard` also logs to <output_dir>/logs.
"""

from __future__ import annotations

from pipelines.cli import RESUME_TRAINING, config_parser, parse_config
from pipelines.training import train_tokenizer
from tokenizer.training.presets import TOKENIZER_PRESETS
from tokenizer.training import TrainTokenizerConfig

GROUPS = {"data": "data", "model": "model and quantiser", "loss": "losses", "discriminator": "discriminator",
          "hub": "Hugging Face Hub"}


RESUME_HINT = RESUME_TRAINING


def build_parser():
    return config_parser(TrainTokenizerConfig, __doc__, GROUPS, presets=TOKENIZER_PRESETS)


def main(argv: list[str] | None = None):
    config, _ = parse_config(TrainTokenizerConfig, build_parser(), argv)
    output = train_tokenizer(config)
    print(f"saved tokenizer to {output}")
    return output
