"""Prior training: two steps for both priors, exact resume (stop and kill), bad input, non-finite losses."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prior import CodesDataset, GPTPrior, PixelCNNPrior
from pipelines.training import train_prior
from pipelines.training_run import NonFiniteLossError, find_checkpoint
from prior.training import GridDecoder, PriorTrainer, TrainPriorConfig
from tests.conftest import run_script, start_script
from tests.test_index_files import make_codes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def codes_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("codes")
    make_codes(path, n=60, shard_size=25, codebook_size=50)  # grid 2x3, 4 classes
    return path


def tiny_config(codes_dir, output, prior="gpt", **overrides) -> TrainPriorConfig:
    settings = dict(
        codes_dir=str(codes_dir), output_dir=str(output), prior=prior, size="tiny", max_steps=5, batch_size=8,
        gradient_accumulation_steps=2, learning_rate=1e-3, warmup_steps=1, ema_decay=0.9, log_every=1,
        eval_every=2, checkpoint_every=2, validation_fraction=0.2, class_dropout=0.3, progress=False,
    )
    settings.update(overrides)
    return TrainPriorConfig(**settings)


def weights(run: Path) -> dict[str, torch.Tensor]:
    out = {f"final.{k}": v for k, v in load_file(str(run / "model.safetensors")).items()}
    last = find_checkpoint(run, "latest")
    for name in ("model.safetensors", "ema.safetensors"):
        out.update({f"{name}.{k}": v for k, v in load_file(str(last / name)).items()})
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    assert not [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize("prior, cls", [("gpt", GPTPrior), ("pixelcnn", PixelCNNPrior)])
def test_two_step_training_saves_a_loadable_prior(codes_dir, tmp_path, prior, cls):
    train_prior(tiny_config(codes_dir, tmp_path, prior, max_steps=2))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert lines[-1]["val_bits_per_token"] > 0 and lines[-1]["bits_per_token"] > 0
    # The rate a benchmark turns into seconds per step; tokens/s is steps/s times the batch's tokens.
    batch_tokens = 2 * 3 * 8 * 2  # grid 2x3, batch 8, two accumulation steps
    assert lines[-1]["tokens_per_s"] == pytest.approx(lines[-1]["steps_per_s"] * batch_tokens)
    model = cls.from_pretrained(tmp_path)
    assert model.config.num_classes == 4 and model.config.grid_shape == (2, 3)
    assert 0 < lines[0]["elapsed_s"] <= lines[-1]["elapsed_s"]  # wall time into the run, for time budgets


def test_a_bf16_prior_trains_after_an_fp32_run_in_the_same_process(codes_dir, tmp_path):
    """accelerate holds one precision per process; a tokenizer (fp32) then a prior (bf16), as bench_table trains
    them, must both run at their own precision."""
    first = train_prior(tiny_config(codes_dir, tmp_path / "fp32", max_steps=1))
    second = train_prior(tiny_config(codes_dir, tmp_path / "bf16", max_steps=1, mixed_precision="bf16"))
    saved = [json.loads((run / "train_config.json").read_text())["mixed_precision"] for run in (first, second)]
    assert saved == ["no", "bf16"]
    from accelerate.state import AcceleratorState
    assert str(AcceleratorState().mixed_precision) == "bf16"


@pytest.fixture(scope="module")
def reference_run(codes_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reference")
    train_prior(tiny_config(codes_dir, path))
    return path


def test_run_writes_curves_and_its_config_reloads_as_the_same_config(codes_dir, reference_run, tmp_path):
    from pipelines.cli import config_parser, parse_config

    assert (reference_run / "curves.png").stat().st_size > 1000
    saved = str(reference_run / "train_config.json")
    again, _ = parse_config(TrainPriorConfig, config_parser(TrainPriorConfig), ["--config", saved, "--output_dir", str(tmp_path)])
    assert again == tiny_config(codes_dir, tmp_path)


def stop_at_step_3_then_resume(config: TrainPriorConfig, monkeypatch) -> None:
    """Run `config` until it stops before step 3 (checkpoint_2 written), then resume it from "latest"."""
    original = PriorTrainer.train_step

    def stop_at_3(self):
        if self.state["step"] == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(PriorTrainer, "train_step", stop_at_3)
    with pytest.raises(KeyboardInterrupt):
        train_prior(config)
    monkeypatch.setattr(PriorTrainer, "train_step", original)
    train_prior(dataclasses.replace(config, resume_from_checkpoint="latest"))


def test_resume_after_stop_equals_uninterrupted_run(codes_dir, reference_run, tmp_path, monkeypatch):
    stop_at_step_3_then_resume(tiny_config(codes_dir, tmp_path), monkeypatch)
    assert_same(weights(reference_run), weights(tmp_path))


KILLABLE = """
import sys, time
from prior import training
from pipelines.training import train_prior
from tests.test_prior_training import tiny_config
original = training.PriorTrainer.train_step
def slow(self):
    if self.state["step"] >= 2:
        time.sleep(2.0)
    return original(self)
training.PriorTrainer.train_step = slow
train_prior(tiny_config(sys.argv[1], sys.argv[2]))
"""


def test_resume_after_sigkill_equals_uninterrupted_run(codes_dir, reference_run, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(codes_dir), str(tmp_path)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while find_checkpoint(tmp_path, "latest") is None:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "model.safetensors").exists()
    train_prior(tiny_config(codes_dir, tmp_path, resume_from_checkpoint="latest"))
    assert_same(weights(reference_run), weights(tmp_path))


def test_nonfinite_losses_are_skipped_then_stop_the_run(codes_dir, tmp_path, monkeypatch):
    from prior import training

    calls = {"n": 0}
    original = training.prior_loss

    def flaky(model, codes, labels, context=None):
        calls["n"] += 1
        loss = original(model, codes, labels, context)
        return loss * float("nan") if calls["n"] == 5 or calls["n"] > 8 else loss

    monkeypatch.setattr(training, "prior_loss", flaky)
    config = tiny_config(codes_dir, tmp_path, max_steps=50, max_nonfinite_steps=3, eval_every=100)
    with pytest.raises(NonFiniteLossError, match="not finite for 3 steps in a row at step 3.*checkpoint_2"):
        train_prior(config)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["nonfinite_skipped"] == 1  # the single bad step was skipped and counted
    good = find_checkpoint(tmp_path, "latest")
    assert good.name == "checkpoint_2" and (good / "model.safetensors").is_file()


def test_codes_at_or_above_the_vocabulary_fail_before_training(codes_dir, tmp_path):
    bad = tmp_path / "codes"
    make_codes(bad, n=30, codebook_size=50)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["codebook_size"] = 20
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not below the codebook size 20"):
        train_prior(tiny_config(bad, tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_labels_at_or_above_the_class_count_fail_before_training(tmp_path):
    bad = tmp_path / "codes"
    make_codes(bad, n=30, codebook_size=50)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["num_classes"] = 2  # stored labels go up to 3
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"labels outside 0\.\.1"):
        train_prior(tiny_config(bad, tmp_path / "run"))


def test_other_tokenizer_for_samples_is_refused(codes_dir, tmp_path):
    decoder = GridDecoder(lambda c: c, fingerprint="ef" * 32, codebook_sizes=[50], grid_shapes=[(2, 3)])
    with pytest.raises(ValueError, match="is not the one that made the codes"):
        train_prior(tiny_config(codes_dir, tmp_path), decoder)


def test_sample_grid_written_with_a_decoder(codes_dir, tmp_path):
    fingerprint = CodesDataset(codes_dir).fingerprint
    decode = lambda grids: grids[0][:, None].float().repeat(1, 3, 4, 4) / 25 - 1  # noqa: E731  (B,3,8,12)
    decoder = GridDecoder(decode, fingerprint, codebook_sizes=[50], grid_shapes=[(2, 3)])
    train_prior(tiny_config(codes_dir, tmp_path, max_steps=2, sample_every=2), decoder)
    assert (tmp_path / "samples" / "samples_0000002.png").is_file()


def test_cli_two_steps_and_help(codes_dir, tmp_path):
    helping = start_script("train_prior.py", "--help")  # both at once: each process spends seconds importing
    run_script("train_prior.py", "--codes", codes_dir, "--prior", "pixelcnn", "--size", "tiny", "--output_dir", tmp_path,
               "--max_steps", "2", "--batch_size", "8", "--no_progress")
    assert PixelCNNPrior.from_pretrained(tmp_path).config.codebook_size == 50
    stdout, _ = helping.communicate(timeout=300)
    assert helping.returncode == 0 and "--resume_from_checkpoint" in stdout and "--level" in stdout


def test_report_to_tensorboard_writes_events_and_a_missing_tracker_is_an_error(codes_dir, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    train_prior(tiny_config(codes_dir, tmp_path / "tb", max_steps=2, report_to="tensorboard"))
    events = list((tmp_path / "tb" / "logs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from pipelines import training_run

    monkeypatch.setitem(training_run._TRACKER_PACKAGES, "wandb", lambda: False)
    with pytest.raises(ValueError, match="report_to='wandb'.*not installed"):
        train_prior(tiny_config(codes_dir, tmp_path / "wandb", report_to="wandb"))
    with pytest.raises(ValueError, match="report_to='mlflow'"):
        train_prior(tiny_config(codes_dir, tmp_path / "other", report_to="mlflow"))
    with pytest.raises(ValueError, match="lr_schedule='wavy'"):
        train_prior(tiny_config(codes_dir, tmp_path / "other", lr_schedule="wavy"))


def test_early_stopping_keeps_the_best_weights_and_resumes_its_count(codes_dir, tmp_path, monkeypatch):
    # Validation after every step. First run, 3 steps: best at step 2, one worse evaluation after it.
    scores = iter([3.0, 2.0, 2.5, 2.4, 2.6, 9.9])
    monkeypatch.setattr(PriorTrainer, "validation_bits_per_token", lambda self: next(scores))
    saved = {}
    original = GPTPrior.save_pretrained

    def spy(model, directory, **kwargs):
        saved[Path(directory).name] = {k: v.clone() for k, v in model.state_dict().items()}
        return original(model, directory, **kwargs)

    monkeypatch.setattr(GPTPrior, "save_pretrained", spy)
    (tmp_path / "run" / "best").mkdir(parents=True)  # left by an abandoned run: a fresh run must not use it
    config = tiny_config(codes_dir, tmp_path / "run", max_steps=3, eval_every=1, checkpoint_every=50,
                         early_stopping_patience=3)
    train_prior(config)
    state = json.loads((find_checkpoint(tmp_path / "run", "latest") / "training_state.json").read_text())
    assert (state["step"], state["best_val"], state["evals_since_best"]) == (3, 2.0, 1)
    best = saved["best"]

    def final_is_best():
        final = load_file(str(tmp_path / "run" / "model.safetensors"))
        return final.keys() == best.keys() and all(torch.equal(final[k], best[k]) for k in final)

    assert final_is_best()  # the step-2 weights, not the step-3 ones
    # Resumed with room to run: two more worse evaluations make three since the best -> stop at step 5.
    train_prior(dataclasses.replace(config, max_steps=50, resume_from_checkpoint="latest"))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 5
    state = json.loads((find_checkpoint(tmp_path / "run", "latest") / "training_state.json").read_text())
    assert (state["step"], state["best_val"], state["evals_since_best"]) == (5, 2.0, 3)
    assert final_is_best()
    with pytest.raises(ValueError, match="validation split"):
        tiny_config(codes_dir, tmp_path / "x", early_stopping_patience=2, validation_fraction=0.0)


def test_gpt_dropout_reaches_the_model_and_is_on_in_training_only(codes_dir, tmp_path):
    output = train_prior(tiny_config(codes_dir, tmp_path, dropout=0.3, max_steps=1))
    model = GPTPrior.from_pretrained(output)
    assert model.config.dropout == 0.3  # through build_prior into the saved config
    codes = torch.randint(0, 50, (4, 2, 3))
    model.train()
    assert not torch.equal(model(codes), model(codes))
    for layer in model.transformer.model.layers:  # attention dropout off: the embedding dropout alone still acts
        layer.self_attn.attention_dropout = 0.0
    assert not torch.equal(model(codes), model(codes))
    model.config.dropout = 0.0  # and without it the training forward is deterministic
    assert torch.equal(model(codes), model(codes))
    model.config.dropout = 0.3
    model.eval()
    assert torch.equal(model(codes), model(codes))
    with pytest.raises(ValueError, match="only the gpt prior"):
        tiny_config(codes_dir, tmp_path, prior="pixelcnn", dropout=0.1)
