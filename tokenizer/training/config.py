"""What a tokenizer training run is told: TrainTokenizerConfig (every flag of train_tokenizer.py is one of its
fields), its model section (the architecture and the settings of every architecture's config), the upgrade of
train_config.json files written before each architecture had its own config, and the model a run starts from."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from tessera_hub import HubSettings

from ..data import ImageDataConfig
from ..losses import DiscriminatorConfig, LossConfig
from ..models.autoencoder import AutoencoderConfig
from ..models.base import AUTOENCODER_FIELDS, TokenizerConfig
from ..models.loading import TOKENIZER_CLASSES, Tokenizer, build_tokenizer, load_tokenizer
from ..models.quantizer import QuantizerConfig
from ..models.vae import VAEConfig
from ..models.vqvae2 import VQVAE2Config

MIXED_PRECISION = ("no", "fp16", "bf16")
# The discriminator's default start, as a share of the run (docs/benchmarks.md, "The recipe, measured").
DISC_START_FRACTION = 0.6
ARCHITECTURES = tuple(TOKENIZER_CLASSES)


def _field_as_in(config_class: type, name: str):
    """A field with the default and metadata (flag, help) of `config_class`'s field `name`, for a section that
    gathers the fields of several configs."""
    (declared,) = [f for f in dataclasses.fields(config_class) if f.name == name]
    return field(default=declared.default, default_factory=declared.default_factory, metadata=declared.metadata)


@dataclass
class TokenizerModelSettings:
    """The training config's model section: `architecture` picks the model config that `model_config()` builds
    from the autoencoder every architecture shares and that architecture's own settings below (the other
    architectures' go unused)."""

    architecture: str = field(default="vqgan", metadata={
        "help": f"one of {ARCHITECTURES}: one code grid (vqgan), a top and a bottom grid (vqvae2, VQ-VAE-2), or "
                f"a Gaussian latent (vae)"})
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    # The (bottom) grid's codebook; a vqvae2's top grid has its own, with every option of this one.
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    top_downsample_factor: int = _field_as_in(VQVAE2Config, "top_downsample_factor")
    top_quantizer: QuantizerConfig = _field_as_in(VQVAE2Config, "top_quantizer")
    latent_channels: int = _field_as_in(VAEConfig, "latent_channels")

    def __post_init__(self) -> None:
        if self.architecture not in TOKENIZER_CLASSES:
            raise ValueError(f"architecture={self.architecture!r}: expected one of {list(ARCHITECTURES)}")
        self.model_config()  # the chosen architecture's checks, before any run starts

    def model_config(self) -> TokenizerConfig:
        """The config of the chosen architecture (VQGANConfig, VQVAE2Config or VAEConfig)."""
        config_class = TOKENIZER_CLASSES[self.architecture].config_class
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(config_class) if f.name != "autoencoder"}
        return config_class(self.autoencoder, **own)

    @classmethod
    def of(cls, config: TokenizerConfig) -> TokenizerModelSettings:
        """The section whose model_config() is `config` (the other architectures' settings at their defaults)."""
        own = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        return cls(architecture=type(config).saved_architecture, **own)


def upgrade_train_settings(settings: dict) -> dict:
    """Settings of a TrainTokenizerConfig in the layout written before each architecture had its own config (a
    train_config.json or --config file of then: the autoencoder's fields flat in `model`, and `model.kl_weight`),
    in today's: those fields under `model.autoencoder`, and `loss.kl_weight`. Today's settings come back as
    they are."""
    model = settings.get("model")
    if not isinstance(model, dict) or not {*AUTOENCODER_FIELDS, "kl_weight"} & model.keys():
        return settings
    upgraded = copy.deepcopy(settings)
    model = upgraded["model"]
    moves = [(name, model.setdefault("autoencoder", {}), "model.autoencoder") for name in AUTOENCODER_FIELDS
             if name in model]
    if "kl_weight" in model:
        moves.append(("kl_weight", upgraded.setdefault("loss", {}), "loss"))
    for name, section, where in moves:
        if name in section:
            raise ValueError(f"model.{name} and {where}.{name} both given: expected one of them")
        section[name] = model.pop(name)
    return upgraded


@dataclass
class TrainTokenizerConfig:
    output_dir: str = field(metadata={"help": "where checkpoints, metrics, curves and the final model go"})
    data: ImageDataConfig
    model: TokenizerModelSettings = field(default_factory=TokenizerModelSettings)
    loss: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    max_steps: int = field(default=10_000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=32, metadata={"help": "images per process and micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimiser step"})
    learning_rate: float = field(default=1e-3, metadata={
        "help": "AdamW learning rate of the tokenizer (and of the discriminator unless --disc_learning_rate), "
                "reached after the warm-up"})
    disc_learning_rate: float | None = field(default=None, metadata={"help": "discriminator LR; none = learning_rate"})
    adam_betas: tuple[float, float] = field(default=(0.5, 0.9), metadata={  # taming's GAN betas
        "help": "AdamW betas β1,β2 of the tokenizer's and the discriminator's optimisers"})
    weight_decay: float = field(default=0.0, metadata={
        "help": "AdamW weight decay on every tokenizer and discriminator parameter"})
    warmup_steps: int = field(default=50, metadata={"help": "steps of linear learning-rate warm-up from 0"})
    lr_schedule: str = field(default="cosine", metadata={"help": "constant, cosine or linear, after the warm-up"})
    max_grad_norm: float | None = field(default=None, metadata={
        "help": "clip the gradient norm of the tokenizer and of the discriminator to this; none or 0 = no clipping"})
    mixed_precision: str = field(default="no", metadata={"help": f"one of {list(MIXED_PRECISION)}"})
    # EMA of weights; 0 = off. With EMA on, the saved model holds the EMA weights.
    ema_decay: float = field(default=0.0, metadata={
        "help": "EMA of weights (e.g. 0.999), saved as the final model; 0 = off"})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation, the batch order and the random flips"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader workers decoding images"})
    log_every: int = field(default=10, metadata={"help": "log metrics (metrics.jsonl, trackers) every N steps"})
    image_every: int = field(default=500, metadata={"help": "write a reconstruction grid every N steps"})
    checkpoint_every: int = field(default=1000, metadata={
        "help": "save a resumable checkpoint every N steps and at the end"})
    checkpoints_total_limit: int | None = field(default=2, metadata={
        "help": "checkpoints kept (at least 2); none = all"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "a checkpoint folder or 'latest'"})
    max_nonfinite_steps: int = field(default=5, metadata={
        "help": "this many steps in a row with a non-finite loss (each skipped) stop the run, saving no model"})
    # Fine-tuning: the folder's model (its config and weights) replaces the model flags; only the resolution is
    # the data's (every architecture here is convolutional, so a tokenizer runs at any multiple of its factor).
    init_from: str | None = field(default=None, metadata={
        "help": "a saved tokenizer folder or Hub id (an earlier run, or one from tessera convert) "
                "whose config and weights start the run; the model flags are then ignored"})
    report_to: str = field(default="none", metadata={"help": "experiment trackers: tensorboard, wandb, all or none"})
    progress: bool = field(default=True, metadata={"help": "progress bar", "off": "no progress bar (quiet logs)"})
    hub: HubSettings = field(default_factory=HubSettings)

    # Values __post_init__ derives from others when not given; `--config run.json --max_steps N` derives them
    # anew (pipelines.cli.parse_config) unless the file set them to something else.
    derived_paths: ClassVar[tuple[tuple[str, ...], ...]] = (("loss", "disc_start_step"),)

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision={self.mixed_precision!r}: expected one of {list(MIXED_PRECISION)}")
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "log_every", "image_every", "checkpoint_every",
                     "max_nonfinite_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected a positive integer")
        if self.loss.disc_start_step is None:  # recorded as a step in train_config.json
            self.loss.disc_start_step = int(DISC_START_FRACTION * self.max_steps)
        smallest = 3 * 2**self.discriminator.num_layers  # each PatchGAN layer halves; two 4x4 convs follow
        resolution = self.model.autoencoder.resolution
        if self.loss.gan_weight > 0 and resolution < smallest:
            raise ValueError(
                f"a {self.discriminator.num_layers}-layer discriminator needs images of at least {smallest} px; "
                f"resolution is {resolution}: use fewer discriminator layers"
            )
        if self.data.resolution != resolution:
            raise ValueError(f"data resolution {self.data.resolution} differs from model resolution {resolution}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def upgrade_settings(settings: dict) -> dict:
        """Older layouts of these settings in today's (upgrade_train_settings); pipelines.cli.parse_config applies
        it to a --config file's settings."""
        return upgrade_train_settings(settings)


def initial_model(config: TrainTokenizerConfig) -> tuple[TrainTokenizerConfig, Tokenizer]:
    """The model `config.init_from` holds, at the data's resolution, and `config` recording its architecture."""
    loaded = load_tokenizer(config.init_from)
    autoencoder = dataclasses.replace(loaded.config.autoencoder, resolution=config.data.resolution)
    model_config = dataclasses.replace(loaded.config, autoencoder=autoencoder)
    model = build_tokenizer(model_config)
    model.load_state_dict(loaded.state_dict())
    return dataclasses.replace(config, model=TokenizerModelSettings.of(model_config)), model
