"""Bad input is refused where it enters, and what goes wrong during a run stops it cleanly: no model is ever
saved from non-finite weights, and no config value of the wrong type reaches a model."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from pipelines.cli import config_from_dict, config_parser, parse_config
from pipelines.training import train_tokenizer
from pipelines.training_run import NonFiniteLossError, find_checkpoint
from prior import GPTPrior
from tests.conftest import tiny_prior, tiny_prior_for, tiny_vqgan, write_images
from tests.test_training import architecture_model, image_folder, reference_run, reference_runs, tiny_train_config  # noqa: F401 (fixtures)
from tokenizer import VQGAN
from tokenizer.losses import VQGANLoss
from tokenizer.training import TrainTokenizerConfig


@pytest.mark.parametrize("flag, value, message", [
    ("--beta", "nan", r"model.quantizer.beta=nan: expected a finite number"),
    ("--learning_rate", "inf", r"learning_rate=inf: expected a finite number"),
    ("--gan_weight", "-inf", r"loss.gan_weight=-inf: expected a finite number"),
])
def test_non_finite_flags_are_refused_naming_the_field(flag, value, message, tmp_path):
    parser = config_parser(TrainTokenizerConfig)
    with pytest.raises(ValueError, match=message):
        parse_config(TrainTokenizerConfig, parser, ["--output_dir", str(tmp_path), "--dataset", "emoji", f"{flag}={value}"])


@pytest.mark.parametrize("settings, message", [
    ({"max_steps": "10"}, r"max_steps='10': expected an integer"),
    ({"max_steps": 2.5}, r"max_steps=2.5: expected an integer"),
    ({"loss": {"gan_weight": "high"}}, r"loss.gan_weight='high': expected a finite number"),
    ({"progress": 1}, r"progress=1: expected true or false"),
    ({"adam_betas": [0.5]}, r"adam_betas=\[0.5\]: expected 2 values"),
    ({"adam_betas": [0.5, "x"]}, r"adam_betas\[1\]='x': expected a finite number"),
    ({"data": [1]}, r"data=\[1\]: expected a JSON object"),
])
def test_config_values_of_the_wrong_type_are_refused_naming_the_field(settings, message, tmp_path):
    base = {"output_dir": str(tmp_path), "data": {"dataset": "emoji"}}
    with pytest.raises(ValueError, match=message):
        config_from_dict(TrainTokenizerConfig, {**base, **settings})


def test_a_config_file_with_a_wrong_type_names_the_field(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"output_dir": str(tmp_path), "data": {"dataset": "emoji"}, "batch_size": "32"}))
    with pytest.raises(ValueError, match=r"batch_size='32': expected an integer"):
        parse_config(TrainTokenizerConfig, config_parser(TrainTokenizerConfig), ["--config", str(path)])


@pytest.mark.parametrize("model, cls, field, value, message", [
    ("tokenizer", VQGAN, "channels", "wide", r"config.json: .*channels"),
    ("prior", GPTPrior, "hidden_size", 1.5, r"config.json: hidden_size=1.5: expected an integer"),
    ("prior", GPTPrior, "rope_theta", None, r"config.json: rope_theta=None: expected a finite number"),
    ("prior", GPTPrior, "hidden_size", 2**40, r"config.json describes a model that cannot be built here"),
])
def test_a_saved_config_json_with_a_wrong_value_names_the_file(model, cls, field, value, message, tmp_path):
    (tiny_vqgan() if model == "tokenizer" else tiny_prior(num_heads=1)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert field in config
    config[field] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        cls.from_pretrained(tmp_path)


def test_a_model_with_non_finite_weights_is_never_saved(tmp_path):
    model = tiny_vqgan()
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(ValueError, match=r"1 weight tensors of this tokenizer hold NaN or infinite values"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_tokenizer_training_skips_a_non_finite_step_then_stops_without_saving_a_model(
        image_folder, tmp_path, monkeypatch):  # noqa: F811
    calls = {"n": 0}
    original = VQGANLoss.generator_loss

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        loss, logs = original(self, *args, **kwargs)
        return (loss * float("nan") if calls["n"] == 3 or calls["n"] > 6 else loss), logs

    monkeypatch.setattr(VQGANLoss, "generator_loss", flaky)
    out = tmp_path / "run"
    config = tiny_train_config(image_folder, out, max_steps=10, gradient_accumulation_steps=1, max_nonfinite_steps=3)
    with pytest.raises(NonFiniteLossError, match=r"not finite for 3 steps in a row at step 5.*checkpoint_4"):
        train_tokenizer(config)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]  # call 3 was skipped, not counted as a step
    assert records[-1]["nonfinite_skipped"] == 1 and all(map(torch.tensor, [r["loss"] for r in records]))
    assert not (out / "model.safetensors").exists()
    assert find_checkpoint(out, "latest").name == "checkpoint_4"


def test_config_of_an_earlier_run_with_new_max_steps_derives_the_discriminator_start_anew(tmp_path):
    """docs/training.md: `--config runs/emoji-vq/train_config.json --output_dir runs/emoji-vq-long --max_steps 50000`."""
    parser = config_parser(TrainTokenizerConfig)
    first, _ = parse_config(TrainTokenizerConfig, parser, ["--output_dir", str(tmp_path / "a"), "--dataset", "emoji",
                                                          "--max_steps", "1000"])
    assert first.loss.disc_start_step == 600
    (tmp_path / "train_config.json").write_text(json.dumps(first.to_dict()))
    longer, _ = parse_config(TrainTokenizerConfig, parser, ["--config", str(tmp_path / "train_config.json"),
                                                           "--output_dir", str(tmp_path / "b"), "--max_steps", "50000"])
    assert longer.max_steps == 50000 and longer.loss.disc_start_step == 30000
    # A start the earlier run chose itself stays; a flag beside the file still wins.
    chosen = {**first.to_dict(), "loss": {**first.to_dict()["loss"], "disc_start_step": 100}}
    (tmp_path / "chosen.json").write_text(json.dumps(chosen))
    kept, _ = parse_config(TrainTokenizerConfig, parser, ["--config", str(tmp_path / "chosen.json"), "--max_steps", "50000"])
    assert kept.loss.disc_start_step == 100
    flagged, _ = parse_config(TrainTokenizerConfig, parser, ["--config", str(tmp_path / "train_config.json"),
                                                            "--max_steps", "50000", "--disc_start_step", "7"])
    assert flagged.loss.disc_start_step == 7


@pytest.mark.parametrize("damage, message", [
    ("random_states_0.pkl", r"random_states_0.pkl cannot be read .*so the resume would not be exact"),
    ("optimizer.bin", r"optimizer.bin cannot be read"),
    ("ema.safetensors", r"ema.safetensors cannot be restored"),
    ("architecture", r"checkpoint_5 does not fit this run's models .*size mismatch"),
])
def test_a_checkpoint_that_cannot_be_restored_exactly_is_an_error_naming_the_file(
        damage, message, image_folder, reference_run, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    latest = find_checkpoint(run, "latest")
    overrides = {}
    if damage == "architecture":  # resuming with another width
        model = architecture_model("vqgan")
        overrides["model"] = replace(model, autoencoder=replace(model.autoencoder, channels=16))
    else:
        (latest / damage).write_bytes(b"not what was saved")
    with pytest.raises(ValueError, match=message):
        train_tokenizer(tiny_train_config(image_folder, run, resume_from_checkpoint="latest", **overrides))


@pytest.mark.parametrize("settings, message", [
    ({"guidance_scale": float("nan")}, r"guidance_scale=nan: expected a finite non-negative value"),
    ({"guidance_scale": float("inf")}, r"guidance_scale=inf"),
    ({"temperature": float("nan")}, r"temperature=nan: expected a finite positive value"),
    ({"temperature": float("inf")}, r"temperature=inf"),
    ({"top_p": float("nan")}, r"top_p=nan"),
])
def test_non_finite_sampling_settings_are_refused_before_any_sampling(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_prior(num_classes=3).sample(1, class_labels=0, **settings)


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "sub/../../x.ckpt"])
def test_hub_file_names_are_confined_to_the_snapshot_folder(name, tmp_path):
    from tessera_hub import resolve_folder

    with pytest.raises(ValueError, match=r"expected a file name inside org/repo \(no absolute path, no '..'\)"):
        resolve_folder("org/repo", (name,), "a checkpoint", cache_dir=tmp_path, local_files_only=True)


def test_the_feature_cache_follows_the_images_not_their_path(tmp_path):
    from pipelines.evaluation import reference_features
    from tokenizer.data import ImageDataConfig

    root = write_images(tmp_path / "data" / "train", 3).parent
    data = ImageDataConfig(dataset=str(root), split="train", resolution=16)

    class Counting(torch.nn.Module):  # stands in for Inception: mean colour per image, and counts its calls
        calls = 0

        def forward(self, images):
            Counting.calls += 1
            return images.mean(dim=(2, 3))

    first = reference_features(data, None, Counting(), tmp_path / "cache", progress=False)
    assert np.array_equal(reference_features(data, None, Counting(), tmp_path / "cache", progress=False), first)
    assert Counting.calls == 1  # the second call was a cache hit
    write_images(root / "train", 3, seed=7)  # other pixels, same names, same path
    changed = reference_features(data, None, Counting(), tmp_path / "cache", progress=False)
    assert Counting.calls == 2 and not np.array_equal(changed, first)


@pytest.mark.parametrize("split", ["test", "validation"])
def test_a_folder_without_split_folders_refuses_a_held_out_split(split, tmp_path):
    from tokenizer.data import ImageDataConfig, build_image_dataset

    write_images(tmp_path, 3)
    assert len(build_image_dataset(ImageDataConfig(str(tmp_path), split="train", resolution=16))) == 3
    with pytest.raises(ValueError, match=rf"split '{split}': .* has no train/ and {split}/ sub-folders .*one set"):
        build_image_dataset(ImageDataConfig(str(tmp_path), split=split, resolution=16))


def test_a_real_floor_over_the_same_images_is_refused(tmp_path):
    from pipelines import ImageGenerationPipeline
    from pipelines.evaluation import evaluate_generation
    from tokenizer.data import ImageDataConfig

    root = tmp_path / "data"
    write_images(root / "train", 3)
    (root / "test").symlink_to(root / "train")  # the held-out split is the training split under another name
    tokenizer = tiny_vqgan()
    pipe = ImageGenerationPipeline(tokenizer, tiny_prior_for(tokenizer))
    data = ImageDataConfig(str(root), split="test", resolution=16)
    with pytest.raises(ValueError, match=r"floor_split='train' holds the same images as split='test'"):
        evaluate_generation(pipe, data, num_images=2, cache_dir=tmp_path / "cache", progress=False)


@pytest.mark.parametrize("count", [0, -3, 2.5, True])
def test_image_counts_are_validated(count, tmp_path):
    from pipelines.evaluation import evaluate_tokenizer
    from tokenizer.data import ImageDataConfig

    write_images(tmp_path / "data", 3)
    data = ImageDataConfig(str(tmp_path / "data"), resolution=16)
    with pytest.raises(ValueError, match=rf"num_images={count!r}: expected a positive integer"):
        evaluate_tokenizer(tiny_vqgan(), data, num_images=count, rfid=False, progress=False)


def test_a_class_tree_with_stray_top_level_images_is_refused_not_unlabelled(tmp_path):
    from tokenizer.data import ImageDataConfig, build_image_dataset

    write_images(tmp_path, 2, classes=("cat", "dog"))
    assert build_image_dataset(ImageDataConfig(str(tmp_path), resolution=16)).num_classes == 2
    write_images(tmp_path, 1)  # 0.png at the top
    with pytest.raises(ValueError, match=r"holds class folders and 1 image files at its top \(0.png\)"):
        build_image_dataset(ImageDataConfig(str(tmp_path), resolution=16))
