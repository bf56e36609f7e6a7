"""The `tessera` command: its subcommands, their flags' help, and a pipeline made and used from the command line."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import ImageGenerationPipeline
from pipelines.commands import SUBCOMMANDS, main, run_subcommand, subcommand_module
from tests.conftest import ROOT, tiny_prior_for, tiny_vqgan, write_images


def test_tessera_help_lists_every_subcommand_without_loading_torch():
    """`tessera --help` answers at once: only the chosen subcommand's module is imported, and none here."""
    code = ("import sys; from pipelines.commands import main; main(['--help']); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False False"
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(SUBCOMMANDS) == ["train-tokenizer", "tokenize", "train-prior", "sample", "evaluate",
                                           "convert", "demo", "app"]


def test_the_installed_command_runs():
    """pyproject's [project.scripts] entry, as pip installs it beside the interpreter."""
    command = Path(sys.executable).parent / "tessera"
    assert command.is_file(), f"{command} is missing: pip install -e . installs it"
    result = subprocess.run([str(command), "sample", "--help"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: tessera sample") and "--save_pipeline" in result.stdout


def test_an_unknown_subcommand_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["trian-prior"])
    assert exit_.value.code == 2
    assert "unknown command 'trian-prior'; expected one of train-tokenizer, tokenize" in capsys.readouterr().err


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_flag_has_a_help_text(name):
    """A help that is only "(default: X)" says nothing; a --no_X flag says what turning X off does."""
    parser = subcommand_module(name).build_parser()
    silent = [a.option_strings[0] for a in _options(parser)
              if a.help != argparse.SUPPRESS and (not a.help or a.help.startswith("(default"))]
    assert silent == [], f"tessera {name}: flags without a help text"
    for action in _options(parser):
        flag = action.option_strings[0]
        if flag.startswith("--no_") and action.help != argparse.SUPPRESS:
            on = next((a for a in _options(parser) if a.option_strings[0] == "--" + flag[5:]), None)
            assert "(default: True)" not in action.help and (on is None or action.help != on.help), flag


def test_no_progress_says_what_it_turns_off():
    help_text = {a.option_strings[0]: a.help for a in _options(subcommand_module("train-prior").build_parser())}
    assert help_text["--no_progress"] == "no progress bar (quiet logs)"
    assert help_text["--no_verify_checksums"].startswith("train on changed shards without checking")


@pytest.fixture
def trained_pair(tmp_path):
    """A tokenizer folder and its prior's folder, as train-tokenizer and train-prior leave them."""
    tokenizer = tiny_vqgan(16, codebook_size=16)
    tokenizer.save_pretrained(tmp_path / "tok")
    prior = tiny_prior_for(tokenizer, num_classes=2, class_names=("cats", "dogs"))
    prior.save_pretrained(tmp_path / "prior")
    return tmp_path / "tok", tmp_path / "prior"


def test_sample_from_a_tokenizer_and_prior_writes_the_pipeline_it_drew_with(trained_pair, tmp_path):
    tok, prior = trained_pair
    args = ["--num_images", "4", "--class_label", "dogs", "--seed", "3", "--no_progress", "--nrow", "2"]
    run_subcommand("sample", ["--tokenizer", str(tok), "--prior", str(prior), "--out", str(tmp_path / "a.png"),
                              "--save_pipeline", str(tmp_path / "pipe"), *args])
    pipe = ImageGenerationPipeline.from_pretrained(tmp_path / "pipe")
    assert pipe.class_names == ["cats", "dogs"] and (tmp_path / "pipe" / "README.md").is_file()
    run_subcommand("sample", ["--pipeline", str(tmp_path / "pipe"), "--out", str(tmp_path / "b.png"), *args])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


def test_a_prior_folder_is_refused_beside_a_pipeline_folder(trained_pair, tmp_path, capsys):
    tok, prior = trained_pair
    with pytest.raises(SystemExit):
        run_subcommand("sample", ["--pipeline", str(tok), "--prior", str(prior), "--out", str(tmp_path / "x.png")])
    assert "error: a pipeline folder holds its priors" in capsys.readouterr().err


def test_evaluate_measures_samples_of_a_tokenizer_and_its_prior(trained_pair, tmp_path):
    tok, prior = trained_pair
    data = write_images(tmp_path / "pictures", 3, classes=("cats", "dogs"))
    result = run_subcommand("evaluate", ["--tokenizer", str(tok), "--prior", str(prior), "--dataset", str(data),
                                         "--split", "train", "--num_images", "4", "--class_labels", "uniform",
                                         "--floor_split", "none", "--no_tokenizer_floor",
                                         "--output_json", str(tmp_path / "gen.json")])
    assert result["num_images"] == 4 and np.isfinite(result["fid"]) and "psnr" not in result
    assert json.loads((tmp_path / "gen.json").read_text())["fid"] == result["fid"]


def test_generation_output_np_is_float_in_unit_range_as_in_diffusers(trained_pair):
    tok, prior = trained_pair
    from pipelines import load_pipeline

    pipe = load_pipeline(tokenizer=tok, prior=prior)
    out = pipe(2, class_labels="cats", output_type="np", generator=torch.Generator().manual_seed(0), progress=False)
    assert out.images.dtype == np.float32 and out.images.shape == (2, 16, 16, 3)
    assert 0.0 <= out.images.min() and out.images.max() <= 1.0
