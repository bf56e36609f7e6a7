import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tokenizer import VQGAN, AutoencoderConfig, VQGANConfig
from tokenizer.data import ImageDataConfig
from tokenizer.losses.discriminator import DiscriminatorConfig
from tokenizer.losses import LossConfig
from tokenizer.models.base import TokenizerConfig
from tokenizer.models.quantizer import QUANTIZER_CHOICE_FIELDS, QuantizerConfig
from pipelines.training import train_tokenizer
from pipelines.training_run import find_checkpoint
from tokenizer.training import TokenizerModelSettings, TokenizerTrainer, TrainTokenizerConfig
from tests.conftest import run_script, tiny_vae_config, tiny_vqvae2_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("data") / "images"
    folder.mkdir()
    for i in range(15):  # + broken.png = 16 files: 2 steps x 2 micro-batches x 4 see them all
        pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
        pixels[:, : 2 + i % 8] = 255  # some structure, different per image
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def architecture_model(architecture: str) -> TokenizerConfig:
    """tiny_train_config's model, or a VQ-VAE-2 (k-means init and dead-code restarts on both codebooks) or a VAE
    of the same widths: every architecture trains through the one command and resumes through the same code."""
    if architecture == "vqgan":
        return VQGANConfig(AutoencoderConfig(downsample_factor=4, resolution=16, channels=8, z_channels=8),
                           QuantizerConfig(codebook_size=16, code_dim=4, dead_code_threshold=0.5))
    if architecture == "vqvae2":
        return tiny_vqvae2_config(quantizer=QuantizerConfig(codebook_size=16, code_dim=4, dead_code_threshold=0.5),
                                  top_quantizer=QuantizerConfig(codebook_size=8, code_dim=4, dead_code_threshold=0.5))
    return tiny_vae_config()


def tiny_train_config(data: Path, output: Path, **overrides) -> TrainTokenizerConfig:
    """Five tiny steps with every feature on; `model` may be a model config (VQGANConfig, VQVAE2Config, VAEConfig)."""
    settings = dict(
        output_dir=str(output),
        data=ImageDataConfig(dataset=str(data), resolution=16, random_flip=True),
        model=architecture_model("vqgan"),
        loss=LossConfig(perceptual_loss="none", disc_start_step=3),
        discriminator=DiscriminatorConfig(channels=8, num_layers=2),
        max_steps=5,
        batch_size=4,
        gradient_accumulation_steps=2,
        learning_rate=1e-3,
        lr_schedule="cosine",
        warmup_steps=1,
        ema_decay=0.9,
        log_every=1,
        num_workers=0,
        image_every=2,
        checkpoint_every=2,
        progress=False,
    )
    settings.update(overrides)
    if isinstance(settings["model"], TokenizerConfig):
        settings["model"] = TokenizerModelSettings.of(settings["model"])
    return TrainTokenizerConfig(**settings)


def all_weights(run: Path) -> dict[str, torch.Tensor]:
    """Final model plus the last checkpoint's raw model, discriminator and EMA."""
    weights = {f"final.{k}": v for k, v in load_file(str(run / "model.safetensors")).items()}
    last = find_checkpoint(run, "latest")
    for name in ("model.safetensors", "model_1.safetensors", "ema.safetensors"):
        weights.update({f"{name}.{k}": v for k, v in load_file(str(last / name)).items()})
    return weights


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different[:5]}"


def test_two_step_training_writes_model_metrics_grid_and_counts_skips(image_folder, tmp_path):
    out = tmp_path / "run"
    train_tokenizer(tiny_train_config(image_folder, out, max_steps=2, loss=LossConfig(perceptual_loss="none", disc_start_step=0)))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert {"loss", "psnr", "codebook_usage", "perplexity", "gan_loss", "disc_loss", "adaptive_weight"} <= lines[-1].keys()
    assert lines[-1]["skipped_images"] >= 1  # broken.png was met
    assert (out / "images" / "reconstructions_0000002.png").is_file()
    model = VQGAN.from_pretrained(out)
    assert model.encode(torch.zeros(1, 3, 16, 16)).shape == (1, 4, 4)


@pytest.fixture(scope="module")
def reference_runs(image_folder, tmp_path_factory):
    """architecture -> an uninterrupted 5-step run that the resumed runs must reproduce bit for bit."""
    runs = {}

    def reference_for(architecture: str) -> Path:
        if architecture not in runs:
            runs[architecture] = tmp_path_factory.mktemp(f"reference-{architecture}")
            train_tokenizer(tiny_train_config(image_folder, runs[architecture], model=architecture_model(architecture)))
        return runs[architecture]
    return reference_for


@pytest.fixture(scope="module")
def reference_run(reference_runs) -> Path:
    return reference_runs("vqgan")


def stop_after_step_2(config: TrainTokenizerConfig, monkeypatch) -> None:
    """Run `config` until checkpoint_2 is written, then stop it as Ctrl-C would (before step 3)."""
    original_step = TokenizerTrainer.train_step

    def stop_at_step_3(self, batches):
        if self.progress.step == 2:
            raise KeyboardInterrupt
        return original_step(self, batches)

    monkeypatch.setattr(TokenizerTrainer, "train_step", stop_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(config)
    monkeypatch.setattr(TokenizerTrainer, "train_step", original_step)


def test_resume_after_stop_equals_uninterrupted_run(image_folder, reference_run, tmp_path, monkeypatch):
    resumed = tmp_path / "resumed"
    stop_after_step_2(tiny_train_config(image_folder, resumed), monkeypatch)
    assert find_checkpoint(resumed, "latest").name == "checkpoint_2"

    train_tokenizer(tiny_train_config(image_folder, resumed, resume_from_checkpoint="latest"))
    assert_same_weights(all_weights(reference_run), all_weights(resumed))


def test_a_streamed_split_trains_and_resumes_exactly(image_folder, tmp_path, monkeypatch):
    """--streaming: batches come from the stream's seeded shuffle per epoch (5 steps of 2 x 4 cross an epoch of
    16 rows), and a run stopped at step 2 resumes to the uninterrupted run's weights, bit for bit."""
    def streamed(out, **overrides):
        data = ImageDataConfig(dataset="imagefolder", data_dir=str(image_folder), resolution=16, streaming=True,
                               max_images=16)
        return dataclasses.replace(tiny_train_config(image_folder, out, **overrides), data=data)

    train_tokenizer(streamed(tmp_path / "reference"))
    stop_after_step_2(streamed(tmp_path / "resumed"), monkeypatch)
    train_tokenizer(streamed(tmp_path / "resumed", resume_from_checkpoint="latest"))
    assert_same_weights(all_weights(tmp_path / "reference"), all_weights(tmp_path / "resumed"))
    lines = [json.loads(line) for line in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["skipped_images"] >= 1  # broken.png came through the stream and was counted


KILLABLE_RUN = """
import json, sys, time
from tokenizer import training
from pipelines.training import train_tokenizer
from tests.test_training import architecture_model, tiny_train_config
original = training.TokenizerTrainer.train_step
def slow_step(self, batches):
    if self.progress.step >= 2:
        time.sleep(2.0)  # leave time for the kill; the maths is unchanged
    return original(self, batches)
training.TokenizerTrainer.train_step = slow_step
train_tokenizer(tiny_train_config(sys.argv[1], sys.argv[2], model=architecture_model(sys.argv[3])))
"""


@pytest.mark.parametrize("architecture", ["vqgan", "vqvae2", "vae"])
def test_resume_after_sigkill_equals_uninterrupted_run(image_folder, reference_runs, tmp_path, architecture):

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_RUN, str(image_folder), str(killed), architecture],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while find_checkpoint(killed, "latest") is None:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.safetensors").exists()  # it really died mid-run

    train_tokenizer(tiny_train_config(image_folder, killed, model=architecture_model(architecture),
                                      resume_from_checkpoint="latest"))
    assert_same_weights(all_weights(reference_runs(architecture)), all_weights(killed))


def test_run_killed_while_writing_a_checkpoint_resumes_from_the_last_whole_one(
    image_folder, reference_run, tmp_path, monkeypatch
):
    """accelerate has written checkpoint_4's files but the run dies before marking it complete: the resume must
    ignore (and delete) that half checkpoint, continue from checkpoint_2, and end bit-equal to the reference."""
    from pipelines.training_run import TrainingRun

    original = TrainingRun._mark_complete

    def die_at_step_4(path, state):
        if state["step"] == 4:
            raise KeyboardInterrupt  # killed after save_state, before the marker
        original(path, state)

    monkeypatch.setattr(TrainingRun, "_mark_complete", staticmethod(die_at_step_4))
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(tiny_train_config(image_folder, run))
    monkeypatch.setattr(TrainingRun, "_mark_complete", staticmethod(original))
    half = run / "checkpoints" / "checkpoint_4"
    assert (half / "model.safetensors").is_file() and not (half / "training_state.json").exists()
    assert find_checkpoint(run, "latest").name == "checkpoint_2"
    with pytest.raises(ValueError, match="checkpoint_4"):
        find_checkpoint(run, str(half))

    train_tokenizer(tiny_train_config(image_folder, run, resume_from_checkpoint="latest"))
    assert_same_weights(all_weights(reference_run), all_weights(run))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint_4", "checkpoint_5"]  # limit 2


def test_new_run_into_a_folder_with_checkpoints_is_refused(image_folder, reference_run):
    with pytest.raises(ValueError, match="already holds checkpoints.*resume_from_checkpoint"):
        train_tokenizer(tiny_train_config(image_folder, reference_run))


def test_run_writes_curves_and_its_config_reloads_as_the_same_config(image_folder, reference_run, tmp_path):
    from pipelines.cli import config_parser, parse_config

    assert (reference_run / "curves.png").stat().st_size > 1000
    parser = config_parser(TrainTokenizerConfig)
    again, _ = parse_config(TrainTokenizerConfig, parser,
                            ["--config", str(reference_run / "train_config.json"), "--output_dir", str(tmp_path)])
    assert again == tiny_train_config(image_folder, tmp_path)
    changed, _ = parse_config(TrainTokenizerConfig, parser, ["--config", str(reference_run / "train_config.json"),
                                                             "--output_dir", str(tmp_path), "--codebook_size", "32"])
    assert changed.model.quantizer.codebook_size == 32 and changed.model.quantizer.code_dim == 4


def test_cli_runs_two_steps(image_folder, tmp_path):
    out = tmp_path / "cli"
    run_script(
        "train_tokenizer.py",
        "--dataset", image_folder, "--resolution", "16", "--output_dir", out, "--max_steps", "2",
        "--batch_size", "4", "--channels", "8", "--z_channels", "8", "--codebook_size", "16", "--code_dim", "4",
        "--perceptual_loss", "none", "--disc_start_step", "1", "--disc_channels", "8", "--disc_layers", "2", "--num_workers", "0",
        "--no_progress",
    )
    assert VQGAN.from_pretrained(out).config.quantizer.codebook_size == 16


LEGACY = ROOT / "tests" / "data" / "legacy"


@pytest.mark.parametrize("architecture", ["vae", "vqvae2"])
def test_train_configs_written_before_the_split_configs_load_with_kl_weight_in_the_loss(architecture, tmp_path):
    """tests/data/legacy/train_config_*.json were written by TrainTokenizerConfig.to_dict() when one model config
    held every architecture's fields and the vae's kl_weight; `--config` (and so a resume from such a run's
    train_config.json) reads them into today's layout."""
    from pipelines.cli import config_parser, parse_config

    legacy = LEGACY / f"train_config_{architecture}.json"
    old = json.loads(legacy.read_text())
    parser = config_parser(TrainTokenizerConfig)
    config, _ = parse_config(TrainTokenizerConfig, parser, ["--config", str(legacy), "--resume_from_checkpoint", "latest"])
    assert config.model.architecture == architecture and config.resume_from_checkpoint == "latest"
    model = config.model.model_config()
    saved = json.loads(json.dumps(model.to_dict()))
    for quantizer in model.quantizers:  # the fsq/lfq fields are newer than the file: a vq at their defaults
        assert quantizer.kind == "vq" and quantizer.fsq_levels == ()
    assert saved.pop("norm_groups") == 32  # newer than the file, at the group count every tokenizer had then
    saved = {name: ({k: v for k, v in value.items() if k not in QUANTIZER_CHOICE_FIELDS} if "quantizer" in name
                    else value) for name, value in saved.items()}
    assert saved == {name: old["model"][name] for name in saved}  # every field the architecture has, as written
    assert config.loss.kl_weight == old["model"]["kl_weight"]
    again = json.loads(json.dumps(config.to_dict()))
    assert again["data"].pop("streaming") is False  # newer than the file
    for section in ("data", "discriminator"):
        assert again[section] == old[section]
    assert again["loss"] == {**old["loss"], "kl_weight": old["model"]["kl_weight"]}
    assert {k: v for k, v in again.items() if not isinstance(v, dict)} == \
        {k: v for k, v in old.items() if not isinstance(v, dict)} | {"resume_from_checkpoint": "latest",
                                                                     "max_nonfinite_steps": 5}  # newer, its default
    if architecture == "vae":
        assert config.loss.kl_weight == 0.1 and model.latent_channels == 8 and model.autoencoder.z_channels == 16
    else:
        assert model.top_downsample_factor == 4 and model.codebook_sizes == [32, 128]
        assert model.grid_shapes == [(2, 2), (8, 8)]
    # A flag still wins over the file, and the file written now reads back as the same config.
    flagged, _ = parse_config(TrainTokenizerConfig, parser, ["--config", str(legacy), "--kl_weight", "0.2"])
    assert flagged.loss.kl_weight == 0.2
    (tmp_path / "new.json").write_text(json.dumps(config.to_dict()))
    assert parse_config(TrainTokenizerConfig, parser, ["--config", str(tmp_path / "new.json")])[0] == config


def test_settings_giving_a_field_in_both_layouts_are_refused():
    from tokenizer.training import upgrade_train_settings

    with pytest.raises(ValueError, match="model.kl_weight and loss.kl_weight"):
        upgrade_train_settings({"model": {"kl_weight": 0.1}, "loss": {"kl_weight": 0.2}})
    with pytest.raises(ValueError, match="model.channels and model.autoencoder.channels"):
        upgrade_train_settings({"model": {"channels": 8, "autoencoder": {"channels": 16}}})
    today = {"model": {"autoencoder": {"channels": 8}}, "loss": {"kl_weight": 0.2}}
    assert upgrade_train_settings(today) is today


def test_cli_help_explains_flags():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_tokenizer.py"), "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0
    assert "--resume_from_checkpoint" in result.stdout and "--codebook_size" in result.stdout
    for flag in ("--architecture", "--top_downsample_factor", "--latent_channels", "--kl_weight"):
        assert flag in result.stdout, flag
    # The top codebook's flags say whose they are; they carry the bottom one's help after that.
    top_help = " ".join(result.stdout.split("--top_codebook_size N")[-1].split()[:6])  # [-1]: past the usage line
    assert top_help.startswith("vqvae2 top codebook: number of codes"), top_help


def test_discriminator_too_deep_for_resolution_is_value_error(image_folder, tmp_path):
    with pytest.raises(ValueError, match="3-layer discriminator needs images of at least 24 px"):
        tiny_train_config(image_folder, tmp_path, discriminator=DiscriminatorConfig(num_layers=3))


def test_mismatched_resolution_is_value_error(image_folder, tmp_path):
    with pytest.raises(ValueError, match="resolution"):
        config = tiny_train_config(image_folder, tmp_path)
        TrainTokenizerConfig(**{**vars(config), "data": ImageDataConfig(dataset=str(image_folder), resolution=32)})


# --- the GAN phase check ------------------------------------------------------------------------------------

def _records(psnrs: list[float], usages: list[float], every: int = 10) -> list[dict]:
    return [{"step": every * (i + 1), "psnr": p, "codebook_usage": u} for i, (p, u) in enumerate(zip(psnrs, usages))]


def test_gan_phase_check_passes_a_healthy_run_and_catches_collapses() -> None:
    from tokenizer.training.gan_phase import check_gan_phase

    # Discriminator at step 50: records 10..40 before it, 60..100 after.
    healthy = check_gan_phase(_records([20, 21, 22, 23, 23, 22.6, 22.8, 23.2, 23.4, 23.5], [0.9] * 10), 50)
    assert not healthy.collapsed and healthy.reason == ""
    assert healthy.psnr_before == pytest.approx(21.5) and healthy.psnr_after == pytest.approx(23.225)
    wrecked = check_gan_phase(_records([20, 21, 22, 23, 23, 20, 18, 17, 16, 15], [0.9] * 10), 50)
    assert wrecked.collapsed and "PSNR fell from 21.50 to 16.50 dB" in wrecked.reason
    codebook = check_gan_phase(_records([22] * 10, [0.9] * 5 + [0.6, 0.5, 0.4, 0.4, 0.3]), 50)
    assert codebook.collapsed and "usage fell from 0.90 to 0.40" in codebook.reason and "PSNR" not in codebook.reason
    diverged = check_gan_phase(_records([22] * 5 + [float("nan")] * 5, [0.9] * 10), 50)
    assert diverged.collapsed
    assert check_gan_phase(_records([22] * 4, [0.9] * 4), 50) is None  # the discriminator never started
