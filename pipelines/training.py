"""Start a training run of either stage: the stage's own loop (tokenizer.training, prior.training) on the
shared run machinery (pipelines.training_run). Scripts, the demo, benchmarks and tests all start runs here."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from prior.training import GridDecoder, PriorTrainer, TrainPriorConfig
from tokenizer.training import TokenizerTrainer, TrainTokenizerConfig, initial_model
from tokenizer.models.loading import Tokenizer

from .training_run import TrainingRun


@contextlib.contextmanager
def _benign_scheduler_warning_silenced():
    # accelerate wraps optimizer.step, which hides the call from the scheduler's order check: benign.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        yield


def train_tokenizer(config: TrainTokenizerConfig, model: Tokenizer | None = None) -> Path:
    """Train a tokenizer (config.model.architecture: a VQ-GAN, a VQ-VAE-2 or a VAE); saves config.json + model.safetensors (and the run's logs) in config.output_dir."""
    if model is None and config.init_from is not None:  # else the trainer builds it after seeding
        config, model = initial_model(config)
    with _benign_scheduler_warning_silenced():
        run = TrainingRun(config, TokenizerTrainer.curves, project_name="tokenizer",
                          markers=TokenizerTrainer.curve_markers(config))
        return TokenizerTrainer(config, run, model).train()


def train_prior(config: TrainPriorConfig, decoder: GridDecoder | None = None) -> Path:
    """Train a GPT or PixelCNN prior on a codes folder; saves config.json + model.safetensors in output_dir."""
    with _benign_scheduler_warning_silenced():
        run = TrainingRun(config, PriorTrainer.curves, project_name=f"{config.prior} prior")
        return PriorTrainer(config, run, decoder).train()
