"""A GPT prior under accelerate's FSDP: the saved prior is whole (gathered through accelerator.get_state_dict), it
trains as the same run does in one process, and it resumes exactly; with --gradient_checkpointing too.

accelerate (1.16) runs FSDP only on GPUs and other accelerators: launched on CPU (ACCELERATE_USE_CPU) it falls
back to plain data parallel (MULTI_CPU) and ignores the FSDP settings, so the FSDP launch runs where a GPU is
present (two processes with two GPUs, one with one) and is skipped with that reason elsewhere. Gradient
checkpointing and the refusals are tested on any machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipelines.dataset_tokenizing import TokenizeDatasetConfig, tokenize_dataset
from pipelines.training import train_prior, train_tokenizer
from prior import GPTPrior
from tests.conftest import write_images
from tests.test_multiprocess import free_port
from tests.test_prior_training import tiny_config
from tests.test_training import tiny_train_config

ROOT = Path(__file__).resolve().parents[1]
# constant LR: 2 steps + resume to 4 must equal 4 steps; no EMA (refused under FSDP); no label drops (decided per
# micro-batch, so they differ between two batches of 4 and one of 8)
SETTINGS = dict(lr_schedule="constant", warmup_steps=0, gradient_accumulation_steps=1, batch_size=4,
                checkpoint_every=2, max_steps=4, eval_every=2, validation_fraction=0.2, ema_decay=0.0, class_dropout=0.0)

LAUNCHED = r'''
import sys
from pathlib import Path
from accelerate import PartialState
from pipelines.training import train_prior
from tests.test_fsdp import SETTINGS
from tests.test_prior_training import tiny_config

codes, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "distributed_type.txt").write_text(str(PartialState().distributed_type))
train_prior(tiny_config(codes, out / "reference", **SETTINGS))
train_prior(tiny_config(codes, out / "resumed", **{**SETTINGS, "max_steps": 2}))
train_prior(tiny_config(codes, out / "resumed", **SETTINGS, resume_from_checkpoint="latest"))
train_prior(tiny_config(codes, out / "checkpointed", **SETTINGS, gradient_checkpointing=True))
'''


@pytest.fixture(scope="module")
def codes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fsdp")
    images = write_images(root / "images", 16, size=12)
    train_tokenizer(tiny_train_config(images, root / "tok", max_steps=1))
    tokenize_dataset(root / "tok", TokenizeDatasetConfig(dataset=str(images), output_dir=str(root / "codes"),
                                                         num_workers=0, progress=False))
    return root / "codes"


def processes() -> int:
    return min(2, torch.cuda.device_count())


@pytest.fixture(scope="module")
def fsdp_run(codes, tmp_path_factory) -> Path:
    if not torch.cuda.is_available():
        pytest.skip("accelerate runs FSDP only on GPUs (on CPU it falls back to data parallel): needs a GPU")
    out = tmp_path_factory.mktemp("fsdp-run")
    script = out / "launched.py"
    script.write_text(LAUNCHED)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes()),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "--use_fsdp", "--fsdp_version", "2",
               "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
               "--fsdp_transformer_layer_cls_to_wrap", "LlamaDecoderLayer",
               "--fsdp_state_dict_type", "SHARDED_STATE_DICT", str(script), str(codes), str(out)]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=600)
    errors = [line for line in result.stderr.splitlines() if line.startswith("[rank")]
    assert result.returncode == 0, "\n".join(errors[-40:]) or result.stderr[-4000:]
    assert (out / "distributed_type.txt").read_text() == "DistributedType.FSDP"
    return out


def test_the_fsdp_prior_is_saved_whole_and_loads(fsdp_run):
    prior = GPTPrior.from_pretrained(fsdp_run / "reference")  # strict: every weight, at its full shape
    assert prior.sample(2).shape == (2, *prior.config.grid_shape)


def test_fsdp_training_follows_the_one_process_run(fsdp_run, codes, tmp_path):
    """P processes of batch 4 are one process of batch 4P over the same grids, up to the order of float sums."""
    train_prior(tiny_config(codes, tmp_path / "one", **{**SETTINGS, "batch_size": 4 * processes()}))
    one, two = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(fsdp_run / "reference" / "model.safetensors"))
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-4


@pytest.mark.parametrize("run", ["resumed", "checkpointed"])
def test_fsdp_resume_and_gradient_checkpointing_give_the_same_prior(fsdp_run, run):
    reference, other = (load_file(str(fsdp_run / name / "model.safetensors")) for name in ("reference", run))
    assert reference.keys() == other.keys()
    assert max(float((reference[k] - other[k]).abs().max()) for k in reference) < 1e-6


def test_tokenizers_refuse_fsdp_with_the_reason(monkeypatch, tmp_path):
    from accelerate.utils import DistributedType
    from pipelines.training_run import TrainingRun

    images = write_images(tmp_path / "images", 2, size=12)
    monkeypatch.setattr(TrainingRun, "__init__", _fsdp_run_init(TrainingRun.__init__, DistributedType.FSDP))
    with pytest.raises(ValueError, match="FSDP is for big priors"):
        train_tokenizer(tiny_train_config(images, tmp_path / "tok", max_steps=1))


def _fsdp_run_init(original, kind):
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.accelerator.state.distributed_type = kind
    return init


def test_gradient_checkpointing_trains_the_same_gpt(codes, tmp_path, monkeypatch):
    from prior.training import PriorTrainer

    switched_on = []
    original = PriorTrainer.train

    def train(self):  # what the run's Llama stack says (transformers' own switch on the layer stack)
        switched_on.append(self.raw_model.transformer.model.gradient_checkpointing)
        return original(self)

    monkeypatch.setattr(PriorTrainer, "train", train)
    for name, checkpointing in (("plain", False), ("checkpointed", True)):
        train_prior(tiny_config(codes, tmp_path / name, **SETTINGS, gradient_checkpointing=checkpointing))
    assert switched_on == [False, True]
    plain, checkpointed = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("plain", "checkpointed"))
    assert max(float((plain[k] - checkpointed[k]).abs().max()) for k in plain) < 1e-6
    with pytest.raises(ValueError, match="gradient_checkpointing is for the gpt prior"):
        tiny_config(tmp_path, tmp_path / "out", prior="pixelcnn", gradient_checkpointing=True)
