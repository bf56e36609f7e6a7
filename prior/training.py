"""Prior training on accelerate, as a library function a test can run for two steps.

Batches come straight from the memory-mapped codes (no DataLoader workers needed): step s of a run reads a
fixed slice of a per-epoch permutation seeded by (seed + epoch), so a resumed run sees exactly the batches
an uninterrupted one would. Class labels are dropped to the null class with probability `class_dropout`
(decided by (seed, batch position)) so classifier-free guidance works at sampling time. What every run shares
with tokenizer training (the accelerator, checkpoints, trackers, metrics.jsonl and curves.png) comes in as a
`run` (pipelines.training_run.TrainingRun; start a run with pipelines.train_prior), because this package may not
import the other stage's code or the pipelines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import DistributedType, broadcast, set_seed
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from tessera_hub import HubSettings, load_weights_strict

from .gpt import GPT_PRESETS, GPTPrior
from .index_files import LEVELS, CodesDataset, codebook_sizes
from .loading import PRIOR_CLASSES, load_prior, prior_for_codes
from .pixelcnn import PIXELCNN_PRESETS

# curves.png panels: title -> metric names (pipelines.training_run draws them)
CURVES = {"bits per token": ["bits_per_token", "val_bits_per_token"], "learning rate": ["lr"]}
LN2 = math.log(2.0)


@dataclass
class TrainPriorConfig:
    codes_dir: str = field(metadata={"flag": "codes", "help": "codes folder written by tessera tokenize"})
    output_dir: str = field(metadata={"help": "where checkpoints, metrics, curves, samples and the final prior go"})
    prior: str = field(default="gpt", metadata={"help": "gpt or pixelcnn"})
    size: str = field(default="small", metadata={
        "help": f"size preset: gpt {sorted(GPT_PRESETS)}, pixelcnn {sorted(PIXELCNN_PRESETS)}"})
    level: str | None = field(default=None, metadata={
        "help": f"two-level (VQ-VAE-2) codes: the level whose prior to train, one of {list(LEVELS)}; the bottom "
                f"prior is conditioned on the top grid. none for one-level codes"})
    validation_fraction: float = field(default=0.05, metadata={
        "help": "share of the code grids held out (split by --seed) for validation bits/token; 0 = no validation"})
    include_flipped: bool = field(default=False, metadata={
        "help": "also train on mirrored codes (tokenized with --flip)"})
    verify_checksums: bool = field(default=True, metadata={
        "help": "check each shard's sha256 against the manifest when it is first read",
        "off": "train on changed shards without checking their sha256"})
    class_dropout: float = field(default=0.1, metadata={"help": "label drop probability (classifier-free guidance)"})
    dropout: float = field(default=0.0, metadata={
        "help": "GPT: dropout on the token embeddings and attention weights, against overfitting small data sets"})
    max_steps: int = field(default=10_000, metadata={"help": "optimiser steps"})
    # Defaults: the "small-32px" preset (prior/presets.py; a test keeps them equal).
    batch_size: int = field(default=32, metadata={"help": "grids per process and micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimiser step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate, reached after the warm-up"})
    weight_decay: float = field(default=0.05, metadata={
        "help": "AdamW weight decay, on matrices only (not on biases and norm gains)"})
    adam_betas: tuple[float, float] = field(default=(0.9, 0.95), metadata={"help": "AdamW betas β1,β2"})
    warmup_steps: int = field(default=100, metadata={"help": "steps of linear learning-rate warm-up from 0"})
    lr_schedule: str = field(default="cosine", metadata={"help": "constant, cosine or linear, after the warm-up"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "GPT: recompute each layer's activations in the backward pass instead of keeping them (less "
                "memory for a big prior, more time per step)"})
    max_grad_norm: float | None = field(default=1.0, metadata={
        "help": "clip the gradient norm to this; none or 0 = no clipping"})
    mixed_precision: str = field(default="no", metadata={"help": "autocast precision: no (fp32), fp16 or bf16"})
    ema_decay: float = field(default=0.0, metadata={
        "help": "EMA of weights (e.g. 0.999); the EMA is validated, sampled and saved; 0 = off"})
    early_stopping_patience: int = field(default=0, metadata={
        "help": "stop after this many evaluations without a better validation bits/token, and save the best "
                "weights as the final prior; 0 = off (the last weights are saved)"})
    seed: int = field(default=0, metadata={
        "help": "seed of the initialisation, the validation split, the batch order and the label drops"})
    log_every: int = field(default=10, metadata={"help": "log metrics (metrics.jsonl, trackers) every N steps"})
    eval_every: int = field(default=500, metadata={
        "help": "measure validation bits/token every N steps and at the end"})
    eval_batches: int = field(default=20, metadata={"help": "validation batches per evaluation; 0 = all"})
    sample_every: int = field(default=1000, metadata={"help": "sample grid every N steps (needs --tokenizer)"})
    checkpoint_every: int = field(default=1000, metadata={
        "help": "save a resumable checkpoint every N steps and at the end"})
    checkpoints_total_limit: int | None = field(default=2, metadata={
        "help": "checkpoints kept (at least 2); none = all"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "a checkpoint folder or 'latest'"})
    # Fine-tuning: the folder's prior (config and weights) replaces --prior and --size; it must model the codes'
    # codebook and grid. Other classes get new class rows (prior/loading.py), the code rows are kept.
    init_from: str | None = field(default=None, metadata={
        "help": "a saved prior folder or Hub id (an earlier run, or one from tessera convert) whose config and "
                "weights start the run (--prior and --size are then ignored); codes with other classes get new "
                "class rows, each starting as the null class"})
    max_nonfinite_steps: int = field(default=5, metadata={
        "help": "this many steps in a row with a non-finite loss (each skipped) stop the run, saving no model"})
    report_to: str = field(default="none", metadata={"help": "experiment trackers: tensorboard, wandb, all or none"})
    # The tokenizer that made the codes; the script loads it for sample grids (this package cannot).
    tokenizer: str | None = field(default=None, metadata={
        "help": "the tokenizer that made the codes: enables sample grids"})
    progress: bool = field(default=True, metadata={"help": "progress bar", "off": "no progress bar (quiet logs)"})
    hub: HubSettings = field(default_factory=HubSettings)

    def __post_init__(self) -> None:
        if self.prior not in PRIOR_CLASSES:
            raise ValueError(f"prior={self.prior!r}: expected one of {sorted(PRIOR_CLASSES)}")
        if self.level is not None and self.level not in LEVELS:
            raise ValueError(f"level={self.level!r}: expected one of {list(LEVELS)}, or none for one-level codes")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision={self.mixed_precision!r}: expected 'no', 'fp16' or 'bf16'")
        if not 0.0 <= self.class_dropout <= 1.0:
            raise ValueError(f"class_dropout={self.class_dropout}: expected a probability")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: expected a probability below 1")
        if self.gradient_checkpointing and self.prior != "gpt" and self.init_from is None:
            raise ValueError("gradient_checkpointing is for the gpt prior; the pixelcnn prior has none")
        if self.dropout > 0 and self.prior != "gpt":
            raise ValueError(f"dropout={self.dropout}: only the gpt prior has dropout; the {self.prior} prior has none")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience={self.early_stopping_patience}: expected >= 0 (0 = off)")
        if self.early_stopping_patience and self.validation_fraction <= 0:
            raise ValueError("early stopping needs a validation split: validation_fraction must be above 0")
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "log_every", "eval_every",
                     "sample_every", "checkpoint_every", "max_nonfinite_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected a positive integer")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class GridDecoder:
    """What sample grids need from the tokenizer, passed in by the caller (prior never imports tokenizer)."""

    decode: Callable[[list[torch.Tensor]], torch.Tensor]  # one grid (B, h, w) per level → images (B, 3, H, W) in [-1, 1]
    fingerprint: str
    codebook_sizes: list[int]  # per level, coarsest first
    grid_shapes: list[tuple[int, int]]


def build_prior(config: TrainPriorConfig, codes: CodesDataset) -> nn.Module:
    """A new prior for the codes, or (init_from) the saved one made ready for them (prior.loading)."""
    if config.init_from is not None:
        loaded = load_prior(config.init_from)
        overrides = {"dropout": config.dropout} if loaded.prior_type == "gpt" else {}
        return prior_for_codes(loaded, codes.codebook_size, codes.grid_shape,
                               (codes.context_codebook_size, codes.context_grid_shape) if codes.has_context else (0, ()),
                               codes.num_classes, tuple(codes.class_names) if codes.num_classes else (),
                               codes.fingerprint, **overrides)
    model_cls = PRIOR_CLASSES[config.prior]
    config_cls = model_cls.config_class
    extra = {"dropout": config.dropout} if config.prior == "gpt" else {}
    if codes.has_context:  # a bottom-level prior reads the top grid
        extra.update(context_codebook_size=codes.context_codebook_size, context_grid_shape=codes.context_grid_shape)
    model_config = config_cls.from_preset(
        config.size, codebook_size=codes.codebook_size, grid_shape=codes.grid_shape, num_classes=codes.num_classes,
        class_names=tuple(codes.class_names) if codes.num_classes else (), tokenizer_fingerprint=codes.fingerprint,
        **extra,
    )
    return model_cls(model_config)


def check_decoder(decoder: GridDecoder | None, codes: CodesDataset) -> None:
    """The tokenizer used for sample grids must be the one the codes were made with; a top-level prior's grids
    cannot be drawn alone (the decoder needs the bottom grid too)."""
    if decoder is None:
        return
    if decoder.fingerprint != codes.fingerprint:
        raise ValueError(
            f"the tokenizer given for samples ({decoder.fingerprint[:12]}) is not the one that made the codes in "
            f"{codes.directory} ({codes.fingerprint[:12]})"
        )
    levels = [tuple(g) for g in codes.manifest["grid_shapes"]]
    if list(decoder.codebook_sizes) != codebook_sizes(codes.manifest) or [tuple(g) for g in decoder.grid_shapes] != levels:
        raise ValueError(
            f"tokenizer codebooks {list(decoder.codebook_sizes)}, grids {[tuple(g) for g in decoder.grid_shapes]} vs "
            f"codes codebooks {codebook_sizes(codes.manifest)}, grids {levels}"
        )
    if codes.num_levels > 1 and not codes.has_context:
        raise ValueError("sample grids of a top-level prior need bottom grids to decode: train it without "
                         "--tokenizer, and sample it through the pipeline with a bottom prior")


def stack_items(items: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """CodesDataset items → codes (B, h, w), labels (B,), contexts (B, h_t, w_t) or None."""
    contexts = torch.stack([item[2] for item in items]) if len(items[0]) == 3 else None
    return torch.stack([item[0] for item in items]), torch.tensor([item[1] for item in items]), contexts


def drop_labels(labels: torch.Tensor, probability: float, seed: int, position: int) -> torch.Tensor:
    """Replace labels by -1 (null class) with the given probability, decided by (seed, position)."""
    if probability == 0 or labels.numel() == 0:
        return labels
    generator = torch.Generator().manual_seed(seed * 1_000_003 + position)
    drop = torch.rand(labels.shape[0], generator=generator) < probability
    return torch.where(drop.to(labels.device), torch.full_like(labels, -1), labels)


def prior_loss(model: nn.Module, codes: torch.Tensor, labels: torch.Tensor | None,
               context: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy in nats per code over the whole grid; `context`: a bottom-level prior's top grids."""
    logits = model(codes, labels, context)  # (B, h, w, K)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), codes.reshape(-1))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (linear, conv, embedding weights) only; none on biases and norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


# --- the loop ---------------------------------------------------------------------------------------------


class PriorTrainer:
    """Owns the prior, its optimiser and batch order; `train()` runs it to max_steps.

    run: the shared run machinery (pipelines.training_run.TrainingRun): accelerator, checkpoints, logs.
    """

    curves = CURVES

    def __init__(self, config: TrainPriorConfig, run, decoder: GridDecoder | None = None):
        self.config, self.run = config, run
        self.accelerator = run.accelerator
        self.last_grid: Path | None = None  # the newest grid the run drew (the model card shows it)
        set_seed(config.seed)
        c = config
        self.train_codes = CodesDataset(c.codes_dir, "train", c.validation_fraction, c.seed,
                                        include_flipped=c.include_flipped, level=c.level,
                                        verify_checksums=c.verify_checksums)
        self.val_codes = (CodesDataset(c.codes_dir, "validation", c.validation_fraction, c.seed, level=c.level,
                                       verify_checksums=c.verify_checksums)
                          if c.validation_fraction > 0 else None)
        self.train_codes.check_values()  # bad codes or labels fail here, before any step
        check_decoder(decoder, self.train_codes)
        self.decoder = decoder
        self.model = build_prior(config, self.train_codes)
        if c.gradient_checkpointing:
            if not isinstance(self.model, GPTPrior):
                raise ValueError(f"gradient_checkpointing is for the gpt prior; {c.init_from} holds a "
                                 f"{self.model.prior_type} prior")
            llama = self.model.transformer  # transformers 5.x renamed it; older versions have only the old name
            enable = getattr(llama, "activation_checkpointing_enable", None) or llama.gradient_checkpointing_enable
            enable({"use_reentrant": False})
        # FSDP (accelerate launch with an FSDP config): each process holds a shard of the weights, so the whole
        # model exists only when gathered (whole_model) and every forward runs on all processes together.
        self.sharded = self.accelerator.distributed_type == DistributedType.FSDP
        if self.sharded and c.ema_decay > 0:
            raise ValueError(f"ema_decay={c.ema_decay} under FSDP: the EMA would need the whole model on every "
                             f"process; train without --ema_decay, or with DDP")
        self.conditional = self.train_codes.num_classes > 0
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(c.ema_decay)) if c.ema_decay > 0 else None
        optimizer = torch.optim.AdamW(parameter_groups(self.model, c.weight_decay), lr=c.learning_rate, betas=tuple(c.adam_betas))
        scheduler = run.lr_scheduler(optimizer, c.max_steps)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.model, optimizer, scheduler)
        if self.ema is not None:
            self.ema.to(self.accelerator.device)
        self.batch_order = run.batch_order(len(self.train_codes), c.batch_size, "training grids")
        # best_val / evals_since_best: early stopping's memory, checkpointed with the rest of the loop's position.
        self.state = {"step": 0, "batches_seen": 0, "nonfinite_skipped": 0, "best_val": None, "evals_since_best": 0}
        self.output_dir = run.output_dir

    @property
    def raw_model(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def _micro_batch(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        position = self.state["batches_seen"]
        codes, labels, context = stack_items([self.train_codes[i] for i in self.batch_order.batch(position)])
        self.state["batches_seen"] += 1
        device = self.accelerator.device
        context = context.to(device) if context is not None else None
        if not self.conditional:
            return codes.to(device), None, context
        labels = drop_labels(labels, self.config.class_dropout, self.config.seed, position).to(device)
        return codes.to(device), labels, context

    def train_step(self) -> dict[str, float] | None:
        """One optimiser step; None when the loss was non-finite and the step was skipped."""
        c, acc = self.config, self.accelerator
        losses = []
        for micro in range(c.gradient_accumulation_steps):
            codes, labels, context = self._micro_batch()
            with acc.autocast():
                loss = prior_loss(self.model, codes, labels, context)
            if not self.run.loss_is_finite(loss):
                self.optimizer.zero_grad(set_to_none=True)
                return None
            context = acc.no_sync(self.model) if micro < c.gradient_accumulation_steps - 1 else contextlib.nullcontext()
            with context:
                acc.backward(loss / c.gradient_accumulation_steps)
            losses.append(float(loss.detach()))
        if c.max_grad_norm:
            acc.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.raw_model)
        loss = sum(losses) / len(losses)
        return {"loss": loss, "bits_per_token": loss / LN2, "lr": self.scheduler.get_last_lr()[0]}

    @torch.no_grad()
    def validation_bits_per_token(self) -> float | None:
        if self.val_codes is None or len(self.val_codes) == 0:
            return None
        model = self._model_to_evaluate()
        model.eval()
        total, count = 0.0, 0
        size = self.config.batch_size
        limit = self.config.eval_batches or math.inf
        for b, start in enumerate(range(0, len(self.val_codes), size)):
            if b >= limit:
                break
            codes, labels, context = stack_items([self.val_codes[i] for i in range(start, min(start + size, len(self.val_codes)))])
            device = self.accelerator.device
            codes, context = codes.to(device), context.to(device) if context is not None else None
            labels = labels.to(device) if self.conditional else None
            with self.accelerator.autocast():
                total += float(prior_loss(model, codes, labels, context)) * codes.shape[0]
            count += codes.shape[0]
        model.train()
        return total / count / LN2

    @torch.no_grad()
    def save_samples(self, step: int) -> None:
        if self.decoder is None or not (self.sharded or self.accelerator.is_main_process):
            return
        model = self.whole_model()  # under FSDP every process takes part in gathering it
        if model is None:
            return
        from torchvision.utils import save_image

        model.eval()
        n = min(16, len(self.train_codes))
        labels = torch.arange(n) % self.train_codes.num_classes if self.conditional else None
        # A bottom-level prior writes bottom grids for the first training images' top grids.
        tops = stack_items([self.train_codes[i] for i in range(n)])[2] if self.train_codes.has_context else None
        codes = model.sample(n, class_labels=labels, generator=torch.Generator(self.accelerator.device).manual_seed(0),
                             context=tops)
        model.train()
        images = self.decoder.decode([codes] if tops is None else [tops, codes]).float().clamp(-1, 1).cpu()
        path = self.output_dir / "samples" / f"samples_{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(images, path, nrow=8, normalize=True, value_range=(-1, 1))
        self.last_grid = path
        self.run.log_image("samples", path, step)

    def _extra_modules(self) -> dict[str, nn.Module]:
        return {"ema": self.ema} if self.ema is not None else {}

    def save_checkpoint(self) -> None:
        self.run.save_checkpoint(self.state["step"], dict(self.state), self._extra_modules())

    def resume(self) -> None:
        state = self.run.resume(self.config.resume_from_checkpoint, self._extra_modules())
        if state is not None:
            self.state = {"best_val": None, "evals_since_best": 0, **state}
        elif self.accelerator.is_main_process and self.best_dir.exists():
            shutil.rmtree(self.best_dir)  # a fresh run: best weights of an earlier, abandoned run are not ours
        self.accelerator.wait_for_everyone()

    @property
    def best_dir(self) -> Path:
        return self.output_dir / "best"

    def _evaluated(self, val_bits: float | None) -> bool:
        """Early stopping's bookkeeping after an evaluation: keep the best weights in best/; True = stop now."""
        if not self.config.early_stopping_patience or val_bits is None:
            return False
        if self.accelerator.num_processes > 1:  # every process decides on rank 0's score, or one might stop alone
            value = torch.tensor([val_bits], dtype=torch.float64, device=self.accelerator.device)
            val_bits = float(broadcast(value, from_process=0))
        best = self.state["best_val"]
        if best is None or val_bits < best:
            self.state.update(best_val=val_bits, evals_since_best=0)
            model = self.whole_model()
            if self.accelerator.is_main_process:
                model.save_pretrained(self.best_dir)
            self.accelerator.wait_for_everyone()
            return False
        self.state["evals_since_best"] += 1
        return self.state["evals_since_best"] >= self.config.early_stopping_patience

    def _model_to_save(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.raw_model

    def _model_to_evaluate(self) -> nn.Module:
        """What validation runs on every process: under FSDP the wrapped model (its forward gathers the shards)."""
        return self.model if self.sharded else self._model_to_save()

    def whole_model(self) -> nn.Module | None:
        """The model to save or sample on the main process, whole: under FSDP gathered through
        accelerator.get_state_dict into a fresh copy (every process must call this; the others get None)."""
        if not self.sharded:
            return self._model_to_save()
        state = self.accelerator.get_state_dict(self.model)
        if not self.accelerator.is_main_process:
            return None
        raw = self.raw_model
        model = type(raw)(raw.config)
        model.load_state_dict({name: tensor.float() for name, tensor in state.items()})
        model.converted_from = getattr(raw, "converted_from", None)
        return model.to(self.accelerator.device)

    def train(self) -> Path:
        c, acc = self.config, self.accelerator
        self.resume()
        self.run.start()
        bar = tqdm(total=c.max_steps, initial=self.state["step"], desc=f"{c.prior} prior",
                   disable=not (c.progress and acc.is_main_process))
        started, first_step = time.perf_counter(), self.state["step"]
        while self.state["step"] < c.max_steps:
            self.model.train()
            logs = self.train_step()
            self.run.count_step(logs is not None, self.state["step"])
            if logs is None:
                self.state["nonfinite_skipped"] += 1
                continue
            self.state["step"] += 1
            step = self.state["step"]
            bar.update(1)
            bar.set_postfix(bits=f"{logs['bits_per_token']:.3f}")
            stop = False
            if step % c.eval_every == 0 or step == c.max_steps:
                logs["val_bits_per_token"] = self.validation_bits_per_token()
                stop = self._evaluated(logs["val_bits_per_token"])
            if step % c.log_every == 0 or "val_bits_per_token" in logs:
                elapsed = max(time.perf_counter() - started, 1e-9)
                tokens = (step - first_step) * c.batch_size * c.gradient_accumulation_steps * acc.num_processes
                logs.update(nonfinite_skipped=self.state["nonfinite_skipped"],
                            steps_per_s=(step - first_step) / elapsed,
                            tokens_per_s=tokens * math.prod(self.train_codes.grid_shape) / elapsed)
                self.run.log(logs, step)
            if step % c.sample_every == 0 or step == c.max_steps:
                self.save_samples(step)
            if step % c.checkpoint_every == 0 or step == c.max_steps or stop:
                self.save_checkpoint()
            if stop:
                acc.print(f"early stopping at step {step}: validation bits/token has not improved on "
                          f"{self.state['best_val']:.4f} for {c.early_stopping_patience} evaluations")
                break
        bar.close()
        self.run.finish()
        acc.wait_for_everyone()
        model = self.whole_model()
        if acc.is_main_process:
            best = {}
            if c.early_stopping_patience and self.state["best_val"] is not None:  # the best weights become the prior
                load_weights_strict(model, self.best_dir / "model.safetensors")
                best = {"val_bits_per_token": self.state["best_val"]}
            source = self.train_codes.manifest.get("source") or {}
            self.run.save_model(model, ["val_bits_per_token", "bits_per_token"], [source.get("dataset", "")],
                                self.last_grid or self.run.newest_file("samples"),
                                "samples drawn by the prior during training (classes cycled)", metrics=best)
        acc.wait_for_everyone()
        return self.output_dir

