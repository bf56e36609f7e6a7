r"""`tessera train-prior`: train a GPT or PixelCNN prior over code indices written by `tessera tokenize`.

    tessera train-prior --codes codes/fmnist-train --prior gpt --size small --output_dir runs/fmnist-gpt
    accelerate launch scripts/train_prior.py --codes codes/fmnist-train --prior gpt --size base \
        --mixed_precision bf16 --tokenizer runs/fmnist-vq --output_dir runs/fmnist-gpt-b
    tessera train-prior --config runs/fmnist-gpt/train_config.json --output_dir runs/fmnist-gpt-2

Codes of a two-level (VQ-VAE-2) tokenizer train one prior per level: `--level top`, then `--level bottom` (its
prior reads the top grid: the GPT as a prefix, the PixelCNN through a conditioning stack).

    tessera train-prior --codes codes/emoji-vqvae2 --level top --output_dir runs/top-gpt
    tessera train-prior --codes codes/emoji-vqvae2 --level bottom --tokenizer runs/emoji-vqvae2 --output_dir runs/bottom-gpt

Every flag is a field of prior.training.TrainPriorConfig (defaults live there: the small-32px recipe).
`--config FILE` starts from a saved config, such as the train_config.json every run writes; flags beside it
override it. `--preset NAME` starts from a named recipe (prior/presets.py: small-32px, imagenet-gpt-b =
LlamaGen's class-conditional GPT-B) under both:

    accelerate launch scripts/train_prior.py --preset imagenet-gpt-b --codes codes/imagenet --output_dir runs/gpt-b

Writes metrics.jsonl and curves.png (training and validation bits per token, learning rate), samples/samples_*.png
when --tokenizer is given, checkpoints/checkpoint_<step>/ and, at the end, config.json + model.safetensors.
"""

from __future__ import annotations

from pipelines.cli import RESUME_TRAINING, config_parser, parse_config
from pipelines.decoder import load_decoder
from pipelines.training import train_prior
from prior.presets import PRIOR_PRESETS
from prior.training import TrainPriorConfig


RESUME_HINT = RESUME_TRAINING


def build_parser():
    return config_parser(TrainPriorConfig, __doc__, {"hub": "Hugging Face Hub"}, presets=PRIOR_PRESETS)


def main(argv: list[str] | None = None):
    config, _ = parse_config(TrainPriorConfig, build_parser(), argv)
    decoder = load_decoder(config.tokenizer) if config.tokenizer else None
    output = train_prior(config, decoder)
    print(f"saved {config.prior} prior to {output}")
    return output
