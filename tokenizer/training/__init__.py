"""Training a tokenizer: what a run is told (config), the loop (trainer) with its batches and reconstruction
previews, the check of the GAN phase, and named recipes (presets)."""

from .config import DISC_START_FRACTION, TokenizerModelSettings, TrainTokenizerConfig, initial_model, upgrade_train_settings
from .trainer import TokenizerTrainer

__all__ = ["DISC_START_FRACTION", "TokenizerModelSettings", "TokenizerTrainer", "TrainTokenizerConfig",
           "initial_model", "upgrade_train_settings"]
