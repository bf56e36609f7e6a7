"""Two processes on CPU (`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2`, gloo; in
accelerate 1.15 `launch --cpu --num_processes 2` starts one process unless mpirun is set up): tokenizer training, tokenizing and
prior training, each checked for identical replicas, all-reduced codebook statistics and exact resume, and
two-process tokenizing against one process.

One launch runs everything (each process pays seconds of imports); every rank writes what it holds to
`rank<i>/`, and the test compares those files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines.dataset_tokenizing import TokenizeDatasetConfig, tokenize_dataset
from pipelines.training_run import find_checkpoint
from prior import CodesDataset
from tests.conftest import write_images

ROOT = Path(__file__).resolve().parents[1]
BATCH, GRID = 4, 4 * 4  # tokenizer micro-batch per process, codes per 16 px image

LAUNCHED = r'''
import json, os, sys
from pathlib import Path
import torch
from safetensors.torch import save_file
from pipelines.dataset_tokenizing import TokenizeDatasetConfig, tokenize_dataset
from pipelines.training import train_prior, train_tokenizer
from prior import training as prior_training
from tokenizer import training as tok_training
from tests.test_training import tiny_train_config
from tests.test_prior_training import tiny_config

images, out = Path(sys.argv[1]), Path(sys.argv[2])
mine = out / f"rank{os.environ['RANK']}"
mine.mkdir(parents=True, exist_ok=True)

def keep(trainer_cls, name):
    """Make each rank dump its own weights (and, for the tokenizer, its last all-reduced usage counts)."""
    original = trainer_cls.train
    def train(self):
        result = original(self)
        save_file({k: v.contiguous() for k, v in self.raw_model.state_dict().items()}, str(mine / f"{name}.safetensors"))
        window = getattr(getattr(self.raw_model, "quantizer", None), "_window", None)
        if window:
            (mine / f"{name}.json").write_text(json.dumps({"last_batch_codes": float(window[-1].sum())}))
        return result
    trainer_cls.train = train

# constant LR: the schedule must not depend on max_steps, so 2 steps + resume to 4 can equal 4 steps
tok = dict(lr_schedule="constant", warmup_steps=0, gradient_accumulation_steps=1, checkpoint_every=2, max_steps=4)
keep(tok_training.TokenizerTrainer, "tok_reference")
train_tokenizer(tiny_train_config(images, out / "tok_reference", **tok))
keep(tok_training.TokenizerTrainer, "tok_stopped")
train_tokenizer(tiny_train_config(images, out / "tok_resumed", **{**tok, "max_steps": 2}))
keep(tok_training.TokenizerTrainer, "tok_resumed")
train_tokenizer(tiny_train_config(images, out / "tok_resumed", **tok, resume_from_checkpoint="latest"))

tokenize_dataset(out / "tok_reference", TokenizeDatasetConfig(dataset=str(images), output_dir=str(out / "codes"),
                 batch_size=3, shard_size=4, num_workers=0, progress=False))

pri = dict(lr_schedule="constant", warmup_steps=0, gradient_accumulation_steps=1, batch_size=4, checkpoint_every=2,
           max_steps=4, eval_every=2, validation_fraction=0.2)
keep(prior_training.PriorTrainer, "prior_reference")
train_prior(tiny_config(out / "codes", out / "prior_reference", **pri))
train_prior(tiny_config(out / "codes", out / "prior_resumed", **{**pri, "max_steps": 2}))
keep(prior_training.PriorTrainer, "prior_resumed")
train_prior(tiny_config(out / "codes", out / "prior_resumed", **pri, resume_from_checkpoint="latest"))
'''


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("data") / "images", 16, size=12)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(image_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two")
    script = out / "launched.py"
    script.write_text(LAUNCHED)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               str(script), str(image_folder), str(out)]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1"},
                            capture_output=True, text=True, timeout=600)
    errors = [line for line in result.stderr.splitlines() if line.startswith("[rank")]  # the ranks' tracebacks
    assert result.returncode == 0, "\n".join(errors[-40:]) or result.stderr[-4000:]
    return out


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


@pytest.mark.parametrize("name", ["tok_reference", "tok_resumed", "prior_reference", "prior_resumed"])
def test_replicas_hold_identical_weights_and_codebooks(two_process_run, name):
    assert_equal(weights(two_process_run / "rank0" / f"{name}.safetensors"),
                 weights(two_process_run / "rank1" / f"{name}.safetensors"))


def test_codebook_statistics_count_both_processes_batches(two_process_run):
    for rank in (0, 1):
        counts = json.loads((two_process_run / f"rank{rank}" / "tok_reference.json").read_text())
        assert counts["last_batch_codes"] == 2 * BATCH * GRID  # all-reduced: both ranks' codes, on each rank


@pytest.mark.parametrize("stage", ["tok", "prior"])
def test_resume_under_two_processes_equals_the_uninterrupted_run(two_process_run, stage):
    reference, resumed = two_process_run / f"{stage}_reference", two_process_run / f"{stage}_resumed"
    assert find_checkpoint(resumed, "latest").name == "checkpoint_4"
    assert_equal(weights(reference / "model.safetensors"), weights(resumed / "model.safetensors"))
    assert_equal(weights(two_process_run / "rank1" / f"{stage}_reference.safetensors"),
                 weights(two_process_run / "rank1" / f"{stage}_resumed.safetensors"))
    for name in ("model.safetensors", "ema.safetensors"):
        assert_equal(weights(find_checkpoint(reference, "latest") / name), weights(find_checkpoint(resumed, "latest") / name))


def test_two_process_tokenizing_writes_the_codes_of_one_process(two_process_run, image_folder, tmp_path):
    tokenize_dataset(two_process_run / "tok_reference", TokenizeDatasetConfig(
        dataset=str(image_folder), output_dir=str(tmp_path / "one"), batch_size=3, shard_size=4, num_workers=0,
        progress=False))
    two, one = CodesDataset(two_process_run / "codes", "all"), CodesDataset(tmp_path / "one", "all")
    assert len(two) == len(one) > 0
    for i in range(len(one)):
        assert torch.equal(two[i][0], one[i][0]) and two[i][1] == one[i][1]
    manifest = lambda d: json.loads((d / "manifest.json").read_text())  # noqa: E731
    checksums = lambda d: [{k: f["sha256"] for k, f in s["files"].items()} for s in manifest(d)["shards"]]  # noqa: E731
    assert checksums(two_process_run / "codes") == checksums(tmp_path / "one")
    assert np.array_equal(manifest(two_process_run / "codes")["grid_shapes"], manifest(tmp_path / "one")["grid_shapes"])
