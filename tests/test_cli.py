"""Command lines built from the typed configs (pipelines.cli) and the one-line errors of every script."""

import json
from dataclasses import dataclass, field

import pytest

from pipelines.cli import config_from_dict, config_leaves, config_parser, emit_json, parse_config
from pipelines.training_run import check_run_settings
from prior.training import TrainPriorConfig
from tokenizer.data import ImageDataConfig
from tokenizer.losses import LossConfig
from tests.conftest import start_script
from tokenizer.training import TrainTokenizerConfig

def parse(cls, argv):
    return parse_config(cls, config_parser(cls), argv)[0]


def test_defaults_come_from_the_dataclass():
    parsed = parse(TrainTokenizerConfig, ["--output_dir", "out", "--dataset", "emoji"])
    assert parsed == TrainTokenizerConfig(output_dir="out", data=ImageDataConfig(dataset="emoji"))
    prior = parse(TrainPriorConfig, ["--codes", "c", "--output_dir", "o"])
    assert prior == TrainPriorConfig(codes_dir="c", output_dir="o")


def test_flags_reach_nested_fields_and_shared_flags_set_every_field():
    c = parse(TrainTokenizerConfig, [
        "--output_dir", "o", "--dataset", "d", "--resolution", "64", "--downsample_factor", "8", "--codebook_size", "77",
        "--no_ema_codebook", "--l2_normalize_codes", "--disc_layers", "2", "--adam_betas", "0.9,0.99",
        "--max_grad_norm", "1.5", "--disc_learning_rate", "none", "--random_flip", "--no_progress", "--channel_mult", "1,2,4,4",
    ])
    assert c.data.resolution == c.model.autoencoder.resolution == 64
    assert c.model.autoencoder.downsample_factor == 8 and c.model.autoencoder.channel_mult == (1, 2, 4, 4)
    assert c.model.quantizer.codebook_size == 77 and not c.model.quantizer.use_ema and c.model.quantizer.l2_normalize
    assert c.discriminator.num_layers == 2 and c.adam_betas == (0.9, 0.99) and c.max_grad_norm == 1.5
    assert c.disc_learning_rate is None and c.data.random_flip and not c.progress


def test_config_file_then_flags_override(tmp_path):
    saved = config_from_dict(TrainTokenizerConfig, {
        "output_dir": "first", "data": {"dataset": "emoji", "resolution": 16},
        "model": {"autoencoder": {"resolution": 16, "channels": 8}}, "discriminator": {"num_layers": 2}, "max_steps": 7,
    })
    path = tmp_path / "run.json"
    path.write_text(json.dumps(saved.to_dict()))
    c = parse(TrainTokenizerConfig, ["--config", str(path), "--output_dir", "second", "--max_steps", "9"])
    assert c.output_dir == "second" and c.max_steps == 9
    assert c.model.autoencoder.channels == 8 and c.model.autoencoder.resolution == c.data.resolution == 16
    assert c.data.dataset == "emoji"


@pytest.mark.parametrize("argv, match", [
    (["--dataset", "emoji"], "missing --output_dir"),
    (["--output_dir", "o"], "missing --dataset"),
    # Both checked when the run starts (pipelines.training_run.check_run_settings), for both stages alike.
    (["--output_dir", "o", "--dataset", "e", "--lr_schedule", "wavy"], None),
    (["--output_dir", "o", "--dataset", "e", "--report_to", "mlflow"], None),
])
def test_user_errors_are_value_errors_naming_the_value(argv, match):
    if match is None:
        config = parse(TrainTokenizerConfig, argv)
        with pytest.raises(ValueError, match=f"{argv[-2][2:]}='{argv[-1]}'"):
            check_run_settings(config)
        return
    with pytest.raises(ValueError, match=match):
        parse(TrainTokenizerConfig, argv)


def test_bad_config_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "unknown.json").write_text(json.dumps({"output_dir": "o", "data": {"dataset": "e", "colour": 1}}))
    with pytest.raises(ValueError, match="not valid JSON"):
        parse(TrainTokenizerConfig, ["--config", str(tmp_path / "bad.json")])
    with pytest.raises(ValueError, match=r"unknown config fields \['data.colour'\]"):
        parse(TrainTokenizerConfig, ["--config", str(tmp_path / "unknown.json")])
    with pytest.raises(FileNotFoundError, match="absent.json"):
        parse(TrainTokenizerConfig, ["--config", str(tmp_path / "absent.json")])


def test_accidental_flag_collisions_are_caught():
    @dataclass
    class Inner:
        rate: float = 1.0

    @dataclass
    class Outer:
        rate: float = 2.0
        inner: Inner = field(default_factory=Inner)

    with pytest.raises(TypeError, match="would share --rate"):
        config_leaves(Outer)


def test_every_training_flag_has_one_default_and_a_help_entry():
    for cls in (TrainTokenizerConfig, TrainPriorConfig):
        text = config_parser(cls).format_help()
        for flag, leaf in config_leaves(cls).items():
            shown = f"--no_{flag}" if leaf.kind is bool and leaf.default else f"--{flag}"
            assert shown in text, (cls.__name__, shown)


def test_scripts_turn_user_errors_into_one_line(tmp_path):
    bad = tmp_path / "tok"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00")  # truncated
    cases = [
        (["train_tokenizer.py", "--dataset", "emoji"], "error: missing --output_dir"),
        (["train_prior.py", "--codes", str(tmp_path / "nothing"), "--output_dir", str(tmp_path / "o")], "error: "),
        (["sample.py", "--tokenizer", str(bad), "--prior", str(bad), "--num_images", "-3"], "error: argument --num_images: '-3': expected an integer >= 1"),
        (["evaluate.py", "--tokenizer", str(bad), "--dataset", "emoji"], "model.safetensors"),
    ]
    running = [(argv, needle, start_script(*argv)) for argv, needle in cases]  # side by side: imports dominate
    for argv, needle, proc in running:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, (argv, stderr[-2000:])
        assert needle in stderr and "Traceback" not in stderr, (argv, stderr[-2000:])


def test_presets_lie_under_the_config_file_and_the_flags(tmp_path):
    from tokenizer.training.presets import TOKENIZER_PRESETS

    parser = config_parser(TrainTokenizerConfig, presets=TOKENIZER_PRESETS)
    base = ["--dataset", "imagenet-1k", "--output_dir", str(tmp_path)]
    config, _ = parse_config(TrainTokenizerConfig, parser, base + ["--preset", "imagenet-vq16", "--codebook_size", "8192"])
    # LlamaGen's VQ-16: 256 px, 16x16 grid, l2-normalised 8-dim codes updated by gradient, bf16, EMA of weights.
    assert (config.model.autoencoder.resolution, config.data.resolution,
            config.model.model_config().grid_shapes) == (256, 256, [(16, 16)])
    assert config.model.quantizer.l2_normalize and not config.model.quantizer.use_ema
    assert config.model.quantizer.codebook_size == 8192  # the flag wins over the preset
    assert (config.mixed_precision, config.adam_betas, config.loss.disc_start_step) == ("bf16", (0.9, 0.95), 20_000)
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"learning_rate": 5e-5, "model": {"autoencoder": {"channels": 96}}}))
    config, _ = parse_config(TrainTokenizerConfig, parser, base + ["--preset", "imagenet-vq16", "--config", str(saved)])
    autoencoder = config.model.autoencoder
    assert (config.learning_rate, autoencoder.channels, autoencoder.z_channels) == (5e-5, 96, 256)  # file over preset
    assert TOKENIZER_PRESETS["imagenet-vq16"]["model"]["autoencoder"]["channels"] == 128  # the table is never modified
    small, _ = parse_config(TrainTokenizerConfig, parser, base + ["--preset", "small-32px"])
    assert small.model.model_config().grid_shapes == [(8, 8)] and small.discriminator.num_layers == 2
    with pytest.raises(SystemExit):  # argparse refuses an unknown name, listing the choices
        parse_config(TrainTokenizerConfig, parser, base + ["--preset", "vq-99"])


def test_the_defaults_are_the_small_32px_preset(tmp_path):
    """No quality flags = the best measured recipe at 32 px; the named preset keeps it when defaults move."""
    from tokenizer.training.presets import TOKENIZER_PRESETS

    parser = config_parser(TrainTokenizerConfig, presets=TOKENIZER_PRESETS)
    base = ["--dataset", "emoji", "--output_dir", str(tmp_path)]
    plain, _ = parse_config(TrainTokenizerConfig, parser, base)
    preset, _ = parse_config(TrainTokenizerConfig, parser, base + ["--preset", "small-32px"])
    assert plain == preset
    assert plain.model.quantizer.ema_decay == 0.9 and plain.lr_schedule == "cosine"
    assert (plain.loss.perceptual_loss, plain.loss.perceptual_weight) == ("stlpips-alex", 0.1)
    assert plain.loss == LossConfig(disc_start_step=6000)  # the dataclass defaults are the preset's too
    # The discriminator starts at 60% of whatever budget is given, unless a step is.
    assert plain.loss.disc_start_step == 6000
    short, _ = parse_config(TrainTokenizerConfig, parser, base + ["--max_steps", "400"])
    assert short.loss.disc_start_step == 240
    fixed, _ = parse_config(TrainTokenizerConfig, parser, base + ["--max_steps", "400", "--disc_start_step", "50"])
    assert fixed.loss.disc_start_step == 50


def test_prior_defaults_are_the_small_32px_preset_and_gpt_b_follows_llamagen(tmp_path):
    from prior.presets import PRIOR_PRESETS
    from prior.training import TrainPriorConfig

    parser = config_parser(TrainPriorConfig, presets=PRIOR_PRESETS)
    base = ["--codes", str(tmp_path / "codes"), "--output_dir", str(tmp_path / "prior")]
    plain, _ = parse_config(TrainPriorConfig, parser, base)
    assert plain == parse_config(TrainPriorConfig, parser, base + ["--preset", "small-32px"])[0]
    gpt_b, _ = parse_config(TrainPriorConfig, parser, base + ["--preset", "imagenet-gpt-b", "--max_steps", "100"])
    # LlamaGen train_c2i.py: GPT-B, lr 1e-4 constant, betas (0.9, 0.95), wd 0.05, clip 1, bf16, label dropout 0.1.
    assert (gpt_b.size, gpt_b.learning_rate, gpt_b.lr_schedule, gpt_b.warmup_steps) == ("base", 1e-4, "constant", 0)
    assert (gpt_b.adam_betas, gpt_b.weight_decay, gpt_b.mixed_precision) == ((0.9, 0.95), 0.05, "bf16")
    assert (gpt_b.class_dropout, gpt_b.dropout, gpt_b.max_steps) == (0.1, 0.1, 100)


def test_comma_choices_parse_lists_of_known_names():
    import argparse

    from pipelines.cli import comma_choices

    parse = comma_choices(["vqvae", "vqgan"])
    assert parse("vqgan,vqvae") == ["vqgan", "vqvae"] and parse("") == []
    with pytest.raises(argparse.ArgumentTypeError, match=r"\['gan'\]: expected some of \['vqvae', 'vqgan'\]"):
        parse("vqvae,gan")


def test_emit_json_prints_and_writes_the_same_document(tmp_path, capsys):
    result = {"fid": 34.0, "rows": [1, 2]}
    emit_json(result, tmp_path / "new" / "results.json")  # the folder does not exist yet
    assert json.loads(capsys.readouterr().out) == result
    assert json.loads((tmp_path / "new" / "results.json").read_text()) == result
    emit_json(result)  # stdout only
    assert json.loads(capsys.readouterr().out) == result
