"""What every training run needs beyond its own loop, shared by the tokenizer and the prior trainers.

- The `Accelerator`, with accelerate's project configuration: checkpoints go to
  `<output_dir>/checkpoints/checkpoint_<step>` (automatic naming) and the oldest beyond `total_limit` are removed.
- Checkpoints that are whole or ignored. `save_state` writes models, optimisers, schedulers, grad scaler and RNG
  states; the run then writes its extra modules (EMA weights) as safetensors and, last, `training_state.json`
  (the loop's position) through a temporary name. That file marks a checkpoint complete: resuming takes the newest
  checkpoint that has it and deletes the others, so a run killed while writing a checkpoint never resumes from
  half of one. (accelerate's `register_for_checkpointing` is not used because its loader unpickles with
  `weights_only=False`; nothing here is loaded through pickle.)
- Experiment trackers (`report_to`: tensorboard, wandb, all, none) through accelerate, plus `metrics.jsonl` and
  `curves.png` beside it, redrawn while the run trains; the run's grids (reconstructions, samples) go to the
  trackers as images beside the numbers.
- The final model: saved with its model card (metrics, grid, training config) and, with `--push_to_hub`, pushed
  to the Hub at the end (and each checkpoint to last-checkpoint/ with `--hub_strategy checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import load as accelerate_load
from accelerate.utils import ProjectConfiguration, is_tensorboard_available, is_wandb_available
from safetensors.torch import load_file, load_model, save_model
import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import get_scheduler

from tessera_hub import one_line

from .batch_order import BatchOrder
from .curves import plot_curves

REPORT_TO = ("none", "tensorboard", "wandb", "all")
# --lr_schedule → transformers' scheduler name (every schedule warms up over --warmup_steps)
LR_SCHEDULES = {"constant": "constant_with_warmup", "cosine": "cosine", "linear": "linear"}
STATE_NAME = "training_state.json"
METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"
CONFIG_NAME = "train_config.json"
CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d+)")
_TRACKER_PACKAGES = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}


def check_run_settings(config) -> None:
    """The checks of the settings every training config has; raises ValueError naming the bad value."""
    report_to, checkpoints_total_limit = config.report_to, config.checkpoints_total_limit
    if config.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={config.lr_schedule!r}: expected one of {list(LR_SCHEDULES)}")
    if report_to not in REPORT_TO:
        raise ValueError(f"report_to={report_to!r}: expected one of {list(REPORT_TO)}")
    if checkpoints_total_limit is not None and checkpoints_total_limit < 2:
        # accelerate removes the oldest checkpoint before writing the next one: with a limit of 1, a run killed
        # while saving would be left with no complete checkpoint at all.
        raise ValueError(f"checkpoints_total_limit={checkpoints_total_limit}: expected at least 2, or None to keep all")


class NonFiniteLossError(ValueError):
    """The loss stayed non-finite for max_nonfinite_steps steps in a row: the run stops (its checkpoints stay)."""


def _allow_new_precision(mixed_precision: str) -> None:
    """accelerate keeps one AcceleratorState per process and refuses an Accelerator of another precision; a script
    that trains a tokenizer in fp32 and then a prior in bf16 (bench_table, the pipeline) needs the second one.
    Only the precision-holding state is reset: the process group (PartialState) stays."""
    held = AcceleratorState._shared_state.get("_mixed_precision")
    if held is not None and getattr(held, "value", held) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _trackers(report_to: str) -> list[str]:
    """Tracker names for accelerate's `log_with`; a named tracker whose package is missing is an error."""
    if report_to == "none":
        return []
    if report_to == "all":
        return [name for name, available in _TRACKER_PACKAGES.items() if available()]
    if not _TRACKER_PACKAGES[report_to]():
        raise ValueError(f"report_to={report_to!r}, but the {report_to} package is not installed: "
                         f"pip install 'tessera[tracking]' (or pip install {report_to})")
    return [report_to]


def _flat(config: Mapping, prefix: str = "") -> dict:
    """Nested config → flat {"model.quantizer.codebook_size": 1024, ...} of scalars, as trackers want it."""
    out = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def _unreadable_file(checkpoint: Path) -> Path | None:
    """The first file of a checkpoint that does not load on its own (weights_only / safetensors), if any."""
    for file in sorted(checkpoint.iterdir()):
        try:
            if file.suffix == ".safetensors":
                load_file(str(file))
            elif file.suffix in (".bin", ".pkl"):
                accelerate_load(file, map_location="cpu")
        except Exception:  # noqa: BLE001
            return file
    return None


def find_checkpoint(output_dir: str | Path, which: str) -> Path | None:
    """`which` ("latest" or a folder) → a complete checkpoint of the run in `output_dir`; None when "latest"
    finds none."""
    if which != "latest":
        path = Path(which)
        if not (path / STATE_NAME).is_file():
            raise ValueError(f"resume_from_checkpoint={which!r}: expected a complete checkpoint folder "
                             f"containing {STATE_NAME}")
        return path
    complete = [p for p in (Path(output_dir) / "checkpoints").glob("checkpoint_*") if (p / STATE_NAME).is_file()]
    return max(complete, key=checkpoint_step, default=None)


def checkpoint_step(path: Path) -> int:
    match = CHECKPOINT_PATTERN.fullmatch(path.name)
    return int(match.group(1)) if match else -1


def read_metrics(output_dir: str | Path) -> list[dict]:
    """The records a run logged to <output_dir>/metrics.jsonl, oldest first ([] before the first)."""
    path = Path(output_dir) / METRICS_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class TrainingRun:
    """The accelerator, logs and checkpoints of one run in `output_dir`.

    curves: panel title → metric names drawn in that panel of curves.png (names absent from the logs are skipped).
    markers: label → step, drawn as vertical lines in every panel (where the discriminator starts, say).
    """

    def __init__(self, config, curves: Mapping[str, list[str]], project_name: str, curves_every_s: float = 30.0,
                 markers: Mapping[str, int] | None = None):
        check_run_settings(config)
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.curves, self.curves_every_s, self._curves_at = dict(curves), curves_every_s, 0.0
        self._started = time.perf_counter()
        self.markers = dict(markers or {})
        _allow_new_precision(config.mixed_precision)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            # Schedulers step once per optimiser step (not once per process), so multi-process runs follow the
            # same LR curve as single-process ones.
            step_scheduler_with_optimizer=False,
            log_with=_trackers(config.report_to) or None,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir),
                logging_dir=str(self.output_dir / "logs"),
                automatic_checkpoint_naming=True,
                total_limit=config.checkpoints_total_limit,
            ),
        )
        self.project_name = project_name
        self._nonfinite_in_a_row = 0

    # --- non-finite losses -------------------------------------------------------------------------------

    def loss_is_finite(self, loss: torch.Tensor) -> bool:
        """Whether `loss` is finite on every process: all of them skip a step together, or DDP would hang."""
        finite = torch.isfinite(loss.detach()).float().reshape(1)
        return bool(self.accelerator.gather(finite).min() > 0)

    def count_step(self, finite: bool, step: int) -> None:
        """After each step: a run of `max_nonfinite_steps` skipped (non-finite) steps in a row stops the run."""
        self._nonfinite_in_a_row = 0 if finite else self._nonfinite_in_a_row + 1
        if self._nonfinite_in_a_row >= self.config.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"the loss was not finite for {self._nonfinite_in_a_row} steps in a row at step {step}; stopping "
                f"without saving a model. The last good checkpoint is {self.find_checkpoint('latest')}: lower the "
                f"learning rate or check the data and loss weights, then resume from it")

    def batch_order(self, length: int, batch_size: int, items: str = "items") -> BatchOrder:
        """This process's resumable order over `length` items, seeded by the run's seed."""
        acc = self.accelerator
        return BatchOrder(length, batch_size, self.config.seed, acc.num_processes, acc.process_index, items)

    def lr_scheduler(self, optimizer, total_steps: int):
        """The config's --lr_schedule over `total_steps` scheduler steps, after --warmup_steps of warm-up."""
        return get_scheduler(LR_SCHEDULES[self.config.lr_schedule], optimizer,
                             num_warmup_steps=self.config.warmup_steps, num_training_steps=total_steps)

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def checkpoint_root(self) -> Path:
        return self.output_dir / "checkpoints"

    # --- start and end -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Write train_config.json and start the trackers (after any resume, before the first step)."""
        settings = dataclasses.asdict(self.config)
        self._started = time.perf_counter()
        if self.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n")
        if self.accelerator.log_with:
            self.accelerator.init_trackers(self.project_name, config=_flat(settings))
        if self.config.hub.push_to_hub and self.is_main_process:
            self._hub_repo()  # a missing login or a repo of someone else's fails now, not after the training

    def finish(self) -> None:
        """Final curves; close the trackers. Not `end_training()`: that also destroys the process group, which
        the trainer still needs to save its model (and a script may start another run in the same processes)."""
        self._draw_curves()
        for tracker in self.accelerator.trackers:
            tracker.finish()

    # --- logs --------------------------------------------------------------------------------------------

    def log(self, logs: dict, step: int) -> None:
        """One record: appended to metrics.jsonl, sent to the trackers, and curves.png redrawn now and then."""
        if not self.is_main_process:
            return
        # elapsed_s: seconds since this process started the run (a resumed run counts from its resume).
        record = {"step": step, **{k: v for k, v in logs.items() if k != "step"},
                  "elapsed_s": round(time.perf_counter() - self._started, 2)}
        with (self.output_dir / METRICS_NAME).open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.accelerator.log_with:
            self.accelerator.log({k: v for k, v in logs.items() if isinstance(v, (int, float)) and k != "step"}, step=step)
        if time.monotonic() - self._curves_at >= self.curves_every_s:
            self._draw_curves()

    def log_image(self, name: str, path: Path, step: int) -> None:
        """A grid the run wrote (a PNG) to the trackers as an image, beside the numbers."""
        if not (self.is_main_process and self.accelerator.log_with):
            return
        with Image.open(path) as picture:
            batch = np.asarray(picture.convert("RGB"))[None]  # (1, H, W, 3) uint8: trackers take a batch
        for tracker in self.accelerator.trackers:
            # TensorBoard needs the layout named; W&B makes one wandb.Image per item.
            extra = {"dataformats": "NHWC"} if tracker.name == "tensorboard" else {}
            tracker.log_images({name: batch}, step=step, **extra)

    def records(self) -> list[dict]:
        return read_metrics(self.output_dir)

    def last_values(self, names: list[str]) -> dict[str, float]:
        """The last logged value of each of `names` (those logged at all), for the model card."""
        values = {}
        for record in self.records():
            values.update({k: v for k, v in record.items()
                           if k in names and isinstance(v, (int, float)) and not isinstance(v, bool)})
        return {name: values[name] for name in names if name in values}

    def _draw_curves(self) -> None:
        if self.is_main_process and (records := self.records()):
            plot_curves(records, self.curves, self.output_dir / CURVES_NAME, title=self.project_name,
                        markers=self.markers)
            self._curves_at = time.monotonic()

    # --- checkpoints -------------------------------------------------------------------------------------

    def save_checkpoint(self, step: int, state: dict, modules: Mapping[str, nn.Module] | None = None) -> Path:
        """accelerate's save_state into checkpoints/checkpoint_<step>, then each extra module as
        `<name>.safetensors`, then `state` as training_state.json, which marks the checkpoint complete."""
        acc = self.accelerator
        self.accelerator.project_configuration.iteration = step  # the folder is named by step, not by save count
        acc.save_state()
        path = self.checkpoint_root / f"checkpoint_{step}"
        if self.is_main_process:
            for name, module in (modules or {}).items():
                save_model(module, str(path / f"{name}.safetensors"))
            self._mark_complete(path, state)
            self._draw_curves()
            if self.config.hub.push_to_hub and self.config.hub.hub_strategy == "checkpoint":
                self._push_folder(path, "last-checkpoint", f"checkpoint at step {step}")
        acc.wait_for_everyone()
        return path

    # --- the final model ---------------------------------------------------------------------------------

    def save_model(self, model: nn.Module, metric_names: list[str], datasets: list[str], grid: Path | None = None,
                   grid_caption: str = "", metrics: dict[str, float] | None = None) -> Path:
        """`model` (a SavedModel) into output_dir with its model card: the last values of `metric_names` (and
        `metrics` over them), the data sets, the run's newest `grid` and its config; then pushed to the Hub when
        the run's --push_to_hub says so. Main process only."""
        card = {"metrics": {**self.last_values(metric_names), **(metrics or {})}, "datasets": datasets,
                "train_config": json.loads(json.dumps(dataclasses.asdict(self.config), default=str)),
                "grid": grid, "grid_caption": grid_caption}
        model.save_pretrained(self.output_dir, model_card_kwargs=card)
        hub = self.config.hub
        if hub.push_to_hub:
            model.push_to_hub(self._hub_repo(), commit_message="the final model", model_card_kwargs=card)
            print(f"pushed the model to the Hub: {hub.hub_model_id}")
        return self.output_dir

    def _hub_repo(self) -> str:
        """The run's Hub repo id, the repo made when missing (private with --hub_private_repo, else the
        account's default)."""
        from huggingface_hub import HfApi

        hub = self.config.hub
        return HfApi().create_repo(hub.hub_model_id, private=hub.hub_private_repo or None, exist_ok=True).repo_id

    def _push_folder(self, folder: Path, path_in_repo: str, message: str) -> None:
        """One folder of the run into the Hub repo, replacing what was at `path_in_repo`."""
        from huggingface_hub import HfApi

        HfApi().upload_folder(repo_id=self._hub_repo(), folder_path=folder, path_in_repo=path_in_repo,
                              commit_message=message, delete_patterns=["*"])

    def newest_file(self, folder: str, pattern: str = "*.png") -> Path | None:
        """The newest (by name: step-numbered) file matching `pattern` in output_dir/`folder`, if any: the grid
        of a finished run's last step when it is only saved again."""
        files = sorted((self.output_dir / folder).glob(pattern))
        return files[-1] if files else None

    @staticmethod
    def _mark_complete(path: Path, state: dict) -> None:
        tmp = path / (STATE_NAME + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, path / STATE_NAME)  # atomic: the marker is either whole or absent

    def find_checkpoint(self, which: str) -> Path | None:
        return find_checkpoint(self.output_dir, which)

    def resume(self, which: str | None, modules: Mapping[str, nn.Module] | None = None) -> dict | None:
        """Load a checkpoint into the prepared objects and `modules`; returns its training state, or None when
        there is nothing to resume. Incomplete checkpoints (a run killed mid-save) are deleted first."""
        if self.is_main_process:
            self._delete_incomplete()
        self.accelerator.wait_for_everyone()
        path = self.find_checkpoint(which) if which else None
        if path is None:
            if which:
                self.accelerator.print(f"no complete checkpoint under {self.checkpoint_root}; starting from step 0")
            elif any(self.checkpoint_root.glob("checkpoint_*")):
                raise ValueError(f"{self.checkpoint_root} already holds checkpoints of an earlier run: pass "
                                 "resume_from_checkpoint='latest' (--resume_from_checkpoint latest) to continue it, "
                                 "or choose another output_dir")
            return None
        self._restore(path)
        for name, module in (modules or {}).items():
            file = path / f"{name}.safetensors"
            if not file.is_file():
                raise ValueError(f"{path} has no {file.name}, but this run keeps {name} weights: resume with the "
                                 f"settings the checkpoint was written with")
            try:
                load_model(module, str(file), strict=True)  # copied onto the module's own device
            except Exception as err:  # noqa: BLE001 (a corrupt file or other shapes: named either way)
                raise ValueError(f"{file} cannot be restored ({one_line(err)}): resume with the settings the "
                                 f"checkpoint was written with, or delete {path}") from None
        # The next automatic save continues the step numbering (and its total_limit pruning) from here.
        self.accelerator.project_configuration.iteration = checkpoint_step(path) + 1
        state = json.loads((path / STATE_NAME).read_text())
        self.accelerator.print(f"resumed from {path} at step {state['step']}")
        return state

    def _restore(self, path: Path) -> None:
        """accelerate's load_state, made all or nothing: it skips random states it cannot read (the resume would
        silently stop being exact), and its other failures are tracebacks. Either is a ValueError naming the file."""
        advice = (f"delete {path} to resume from an earlier checkpoint, or resume with the settings it was written "
                  f"with (--config {self.output_dir / CONFIG_NAME})")
        rng = path / f"random_states_{self.accelerator.process_index}.pkl"
        try:
            accelerate_load(rng)  # weights_only, as accelerate loads it
        except Exception as err:  # noqa: BLE001 (any failure to read it means an inexact resume)
            raise ValueError(f"{rng} cannot be read ({one_line(err)}), so the resume would not be exact: "
                             f"{advice}") from None
        try:
            self.accelerator.load_state(str(path))
        except Exception as err:  # noqa: BLE001 (named below, whatever broke)
            culprit = _unreadable_file(path)
            where = f"{culprit} cannot be read" if culprit else f"{path} does not fit this run's models"
            raise ValueError(f"{where} ({one_line(err)}): {advice}") from None

    def _delete_incomplete(self) -> None:
        for path in self.checkpoint_root.glob("checkpoint_*"):
            if not (path / STATE_NAME).is_file():
                shutil.rmtree(path, ignore_errors=True)
