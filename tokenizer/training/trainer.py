"""The tokenizer training loop, as a library function a test can run for two steps.

Each optimiser step: gradient-accumulated generator step (reconstruction + perceptual + bottleneck + adaptive
GAN term), then, once the GAN is on, the discriminator step. What every run shares with prior training (the
accelerator, checkpoints, trackers, metrics.jsonl and curves.png, the batch order and LR schedule) comes in as a
`run` (pipelines.training_run.TrainingRun; start a run with pipelines.train_tokenizer), because this package may
not import the other stage's code or the pipelines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import DistributedType, set_seed
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics.functional.image import peak_signal_noise_ratio
from tqdm.auto import tqdm

from ..data import SkipCounter, StreamedImageDataset, build_image_dataset, collate_images
from ..losses import PatchDiscriminator, VQGANLoss
from ..models.loading import Tokenizer, build_tokenizer
from .batches import ResumableBatches, StreamBatches, random_flip
from .config import TrainTokenizerConfig
from .gan_phase import check_gan_phase
from .previews import save_reconstruction_grid

# The model card's metrics: the last logged value of each the run logs.
CARD_METRICS = ["psnr", "codebook_usage", "perplexity", "top_codebook_usage", "bottom_codebook_usage", "kl_nats",
                "loss"]
# curves.png panels: title -> metric names (pipelines.training_run draws them)
CURVES = {
    "losses": ["loss", "pixel_loss", "perceptual_loss", "quantizer_loss", "kl_loss"],
    "KL (nats per image)": ["kl_nats"],
    "GAN": ["gan_loss", "disc_loss"],
    "PSNR (dB)": ["psnr"],
    "codebook usage": ["codebook_usage", "top_codebook_usage", "bottom_codebook_usage"],
    "codebook perplexity": ["perplexity", "top_perplexity", "bottom_perplexity"],
    "adaptive GAN weight": ["adaptive_weight"],
    "learning rate": ["lr"],
}


@dataclass
class TrainingProgress:
    """What the loop needs beyond accelerate's state to continue exactly."""

    step: int = 0
    batches_seen: int = 0
    skipped: dict = field(default_factory=lambda: {"count": 0, "examples": []})  # SkipCounter state
    nonfinite_skipped: int = 0  # optimiser steps skipped for a non-finite loss


# --- one optimiser step -----------------------------------------------------------------------------------


def _set_requires_grad(module: nn.Module | None, flag: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)


def generator_step(accelerator, model, discriminator, loss_fn, images, step, scale):
    """Forward + backward of the generator objective for one micro-batch; returns (loss, logs, reconstruction)."""
    raw_disc = accelerator.unwrap_model(discriminator) if discriminator is not None else None
    _set_requires_grad(raw_disc, False)  # the GAN term must not put gradients into D
    try:
        with accelerator.autocast():
            out = model(images)
            loss, logs = loss_fn.generator_loss(
                images, out.reconstruction, loss_fn.latent_loss(out), raw_disc,
                accelerator.unwrap_model(model).last_layer, step, latent_name=out.latent_name,
            )
            logs.update(out.latent_logs)
        accelerator.backward(loss * scale)
    finally:
        _set_requires_grad(raw_disc, True)
    return loss.detach(), logs, out.reconstruction.detach()


def discriminator_step(accelerator, discriminator, loss_fn, images, reconstruction, scale):
    with accelerator.autocast():
        loss, logs = loss_fn.discriminator_loss(images, reconstruction, discriminator)
    accelerator.backward(loss * scale)
    return loss.detach(), logs


def _batch_psnr(images: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) on the [0, 1] scale."""
    to_unit = lambda x: ((x.float() + 1) / 2).clamp(0, 1)  # noqa: E731
    per_image = peak_signal_noise_ratio(
        to_unit(reconstruction), to_unit(images), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return float(per_image.mean())


def _optimizer_step(accelerator, optimizer, scheduler, params, max_grad_norm):
    if max_grad_norm:
        accelerator.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _merge(logs: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for log in logs for k in log}
    return {k: sum(log[k] for log in logs if k in log) / sum(k in log for log in logs) for k in sorted(keys)}


# --- the loop ---------------------------------------------------------------------------------------------


class TokenizerTrainer:
    """Owns the models, optimisers and data order of one run; `train()` runs it to max_steps.

    run: the shared run machinery (pipelines.training_run.TrainingRun): accelerator, checkpoints, logs.
    """

    curves = CURVES

    @staticmethod
    def curve_markers(config: TrainTokenizerConfig) -> dict[str, int]:
        """Vertical lines in curves.png: where the discriminator starts, so PSNR and usage read across it."""
        return {"discriminator starts": config.loss.disc_start_step} if config.loss.gan_weight > 0 else {}

    def __init__(self, config: TrainTokenizerConfig, run, model: Tokenizer | None = None):
        self.config, self.run = config, run
        self.accelerator = run.accelerator
        if self.accelerator.distributed_type == DistributedType.FSDP:
            # Two models and two optimisers, each small: sharding them buys no memory worth its cost.
            raise ValueError("tokenizers train on one process or several with DDP (accelerate launch without an "
                             "FSDP config); FSDP is for big priors (tessera train-prior)")
        self.last_grid: Path | None = None  # the newest grid the run drew (the model card shows it)
        set_seed(config.seed)
        self.output_dir = run.output_dir
        self.dataset = build_image_dataset(dataclasses.replace(config.data, random_flip=False))
        self.model = model if model is not None else build_tokenizer(config.model.model_config())
        self.loss_fn = VQGANLoss(config.loss).to(self.accelerator.device)
        use_gan = config.loss.gan_weight > 0
        self.discriminator = PatchDiscriminator(config.discriminator) if use_gan else None
        # EMA of weights and buffers (the EMA codebook is a buffer): torch's AveragedModel, kept on the raw model.
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
                    if config.ema_decay > 0 else None)
        self._build_optimizers()
        if self.ema is not None:
            self.ema.to(self.accelerator.device)
        self.progress = TrainingProgress()
        self.skips = SkipCounter()

    def _build_optimizers(self) -> None:
        c = self.config

        def adam(params, lr):
            return torch.optim.AdamW(params, lr=lr, betas=tuple(c.adam_betas), weight_decay=c.weight_decay)

        def schedule(opt):
            return self.run.lr_scheduler(opt, c.max_steps)

        acc = self.accelerator
        # Everything stateful goes through prepare(), so save_state/load_state cover it (loaded weights_only).
        self.opt_g = adam([p for p in self.model.parameters() if p.requires_grad], c.learning_rate)
        self.sched_g = schedule(self.opt_g)
        if self.discriminator is not None:
            self.opt_d = adam(self.discriminator.parameters(), c.disc_learning_rate or c.learning_rate)
            self.sched_d = schedule(self.opt_d)
            prepared = acc.prepare(self.model, self.discriminator, self.opt_g, self.opt_d, self.sched_g, self.sched_d)
            self.model, self.discriminator, self.opt_g, self.opt_d, self.sched_g, self.sched_d = prepared
        else:
            self.model, self.opt_g, self.sched_g = acc.prepare(self.model, self.opt_g, self.sched_g)

    @property
    def raw_model(self) -> Tokenizer:
        return self.accelerator.unwrap_model(self.model)

    def _extra_modules(self) -> dict[str, nn.Module]:
        return {"ema": self.ema} if self.ema is not None else {}

    def _resume(self) -> None:
        state = self.run.resume(self.config.resume_from_checkpoint, self._extra_modules())
        if state is not None:
            self.progress = TrainingProgress(**state)
            self.skips.load_state_dict(self.progress.skipped)

    def save_checkpoint(self) -> None:
        self.progress.skipped = self.skips.state_dict()
        self.run.save_checkpoint(self.progress.step, dataclasses.asdict(self.progress), self._extra_modules())

    def _next_images(self, batches) -> torch.Tensor:
        """Next micro-batch with at least one readable image, flipped if asked, on the device."""
        while True:
            batch = next(batches)
            self.skips.update(batch["skipped"])
            if batch["image"].shape[0]:
                images = batch["image"].to(self.accelerator.device)
                if self.config.data.random_flip:
                    images = random_flip(images, self.config.seed, self.batch_iter.position)
                return images

    def _skip_step(self) -> None:
        """A non-finite loss: drop this step's gradients; no optimiser, scheduler or EMA update."""
        self.opt_g.zero_grad(set_to_none=True)
        if self.discriminator is not None:
            self.opt_d.zero_grad(set_to_none=True)

    def train_step(self, batches) -> dict[str, float] | None:
        """One optimiser step (generator, then discriminator once the GAN is on); None when a loss was not finite
        and the step was skipped."""
        c, acc, step = self.config, self.accelerator, self.progress.step
        gan_on = self.discriminator is not None and self.loss_fn.gan_active(step)
        scale = 1.0 / c.gradient_accumulation_steps
        logs, psnrs = [], []
        for micro in range(c.gradient_accumulation_steps):
            last = micro == c.gradient_accumulation_steps - 1
            images = self._next_images(batches)
            sync = contextlib.ExitStack()
            if not last:  # DDP: all-reduce gradients only on the last micro-batch
                sync.enter_context(acc.no_sync(self.model))
                if self.discriminator is not None:
                    sync.enter_context(acc.no_sync(self.discriminator))
            with sync:
                loss, g_logs, recon = generator_step(acc, self.model, self.discriminator, self.loss_fn, images, step,
                                                     scale)
                finite = self.run.loss_is_finite(loss)
                if finite and gan_on:
                    d_loss, d_logs = discriminator_step(acc, self.discriminator, self.loss_fn, images, recon, scale)
                    finite = self.run.loss_is_finite(d_loss)
                    g_logs.update(d_logs)
            if not finite:
                self._skip_step()
                return None
            logs.append(g_logs)
            psnrs.append(_batch_psnr(images, recon))
        _optimizer_step(acc, self.opt_g, self.sched_g, self.model.parameters(), c.max_grad_norm)
        if gan_on:
            _optimizer_step(acc, self.opt_d, self.sched_d, self.discriminator.parameters(), c.max_grad_norm)
        elif self.discriminator is not None:
            self.sched_d.step()  # keep both schedules on the same clock
        if self.ema is not None:
            self.ema.update_parameters(self.raw_model)
        merged = _merge(logs)
        merged.update(psnr=sum(psnrs) / len(psnrs), lr=self.sched_g.get_last_lr()[0])
        merged.update(self.raw_model.window_stats())
        return merged

    def train(self) -> Path:
        c, acc = self.config, self.accelerator
        self._resume()
        if isinstance(self.dataset, StreamedImageDataset):
            self.batch_iter = StreamBatches(self.dataset, c.batch_size, c.seed, collate_images, acc.num_processes,
                                            acc.process_index, self.progress.batches_seen)
        else:
            order = self.run.batch_order(len(self.dataset), c.batch_size, "images")
            self.batch_iter = ResumableBatches(self.dataset, order, collate_images, c.num_workers,
                                               self.progress.batches_seen)
        batches = iter(self.batch_iter)
        preview = self._preview_images()  # before start(): a data set with no readable image leaves nothing behind
        self.run.start()
        bar = tqdm(total=c.max_steps, initial=self.progress.step, disable=not (c.progress and acc.is_main_process), desc="tokenizer")
        started, started_step = time.perf_counter(), self.progress.step
        while self.progress.step < c.max_steps:
            self.model.train()
            logs = self.train_step(batches)
            self.progress.batches_seen = self.batch_iter.position
            self.run.count_step(logs is not None, self.progress.step)
            if logs is None:
                self.progress.nonfinite_skipped += 1
                continue
            self.progress.step += 1
            step = self.progress.step
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}", psnr=f"{logs['psnr']:.2f}",
                            **({"usage": f"{logs['codebook_usage']:.2f}"} if "codebook_usage" in logs else
                               {"kl": f"{logs['kl_nats']:.1f}"}))
            if step % c.log_every == 0 or step == c.max_steps:
                logs.update(skipped_images=self.skips.count, nonfinite_skipped=self.progress.nonfinite_skipped,
                            steps_per_s=(step - started_step) / max(time.perf_counter() - started, 1e-9))
                self.run.log(logs, step)
            if step % c.image_every == 0 or step == c.max_steps:
                self._save_reconstructions(preview, step)
            if step % c.checkpoint_every == 0 or step == c.max_steps:
                self.save_checkpoint()
        bar.close()
        if self.skips.count:
            acc.print(self.skips.summary())
        self._report_gan_phase()
        self.run.finish()
        return self._save_final()

    def _report_gan_phase(self) -> None:
        """Say loudly when the GAN phase wrecked the reconstructions (see gan_phase.py)."""
        if self.discriminator is None or not self.run.is_main_process:
            return
        check = check_gan_phase(self.run.records(), self.config.loss.disc_start_step)
        if check is not None and check.collapsed:
            self.accelerator.print(
                f"warning: the GAN phase degraded the reconstructions ({check.reason}); try a later "
                f"--disc_start_step, a lower --gan_weight or --disc_learning_rate, or keep an earlier checkpoint")

    def _preview_images(self, count: int = 8) -> torch.Tensor:
        """The first `count` readable images of the dataset, fixed for the whole run: (n, 3, R, R)."""
        images, skips = [], SkipCounter()
        for i in range(len(self.dataset)):
            item = self.dataset[i]
            if "image" in item:
                images.append(item["image"])
            else:
                skips.update([(item["skipped"], item["reason"])])
            if len(images) == count:
                break
        if not images:
            raise ValueError(f"no readable image in {self.dataset.source} ({len(self.dataset)} files): {skips.summary()}")
        return torch.stack(images)

    def _save_reconstructions(self, images: torch.Tensor, step: int) -> None:
        if self.accelerator.is_main_process:
            self.last_grid = self.output_dir / "images" / f"reconstructions_{step:07d}.png"
            save_reconstruction_grid(self.raw_model, images, self.last_grid)
            self.run.log_image("reconstructions", self.last_grid, step)

    def _save_final(self) -> Path:
        """config.json + model.safetensors + its model card in output_dir (the EMA weights when the run keeps
        them), pushed to the Hub with --push_to_hub."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.run.save_model(self.ema.module if self.ema is not None else self.raw_model, CARD_METRICS,
                                [self.config.data.dataset], self.last_grid or self.run.newest_file("images"),
                                "held-out images (top) and their reconstructions (bottom)")
        acc.wait_for_everyone()
        return self.output_dir
