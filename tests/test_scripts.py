"""Command lines as a user runs them (as subprocesses, few: each spends seconds importing), the library
functions behind them in-process, and the README's Python snippets."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipelines import ImageGenerationPipeline, TokenizeDatasetConfig, tokenize_dataset
from pipelines.evaluation import evaluate_tokenizer
from tests.conftest import ROOT, run_script, start_script, tiny_prior_for, tiny_vqgan, write_images
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig

# Flags each script's --help must explain (train_tokenizer.py and train_prior.py: tests/test_*training.py).
HELP_FLAGS = {
    "tokenize_dataset.py": ["--tokenizer", "--shard_size", "--flip", "--config"],
    "sample.py": ["--pipeline", "--guidance_scale", "--out_dir", "--bottom_prior", "--compile"],
    "evaluate.py": ["--tokenizer", "--pipeline", "--no_rfid", "--output_json"],
    "demo.py": ["--output_dir", "--quick"],
}


@pytest.fixture
def folder(tmp_path) -> Path:
    """2 classes x 3 images of 20x20 + one empty file."""
    root = write_images(tmp_path / "pictures", 3, size=20, classes=("cats", "dogs"))
    (root / "dogs" / "empty.png").write_bytes(b"")
    return root


def test_every_command_line_explains_its_flags():
    running = {name: start_script(name, "--help") for name in HELP_FLAGS}  # all at once: the imports dominate
    for name, proc in running.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} --help: {stderr[-4000:]}"
        assert [flag for flag in HELP_FLAGS[name] if flag not in stdout] == [], name


def test_evaluate_cli_writes_all_keys(folder, tmp_path):
    """(A tokenizer folder without weights: an `error:` line from evaluate.py in tests/test_cli.py.)"""
    tiny_vqgan(16, codebook_size=16).save_pretrained(tmp_path / "tok")
    out = tmp_path / "eval.json"
    result = run_script("evaluate.py", "--tokenizer", tmp_path / "tok", "--dataset", folder, "--split", "train",
                        "--num_images", "4", "--batch_size", "3", "--output_json", out)
    written = json.loads(out.read_text())
    assert {"psnr", "ssim", "lpips", "codebook_usage", "perplexity", "rfid"} <= written.keys() and written["lpips"] > 0
    assert written["num_images"] == 4 and np.isfinite(written["rfid"]) and written["rfid"] >= 0
    assert np.isfinite(written["rkid_mean"]) and written["rkid_std"] >= 0  # KID beside FID: unbiased at few images
    assert 0 < written["codebook_usage"] <= 1 and json.loads(result.stdout) == written
    assert '"psnr"' in result.stdout


def test_evaluate_counts_unreadable_images(folder):
    data = ImageDataConfig(dataset=str(folder), split="train", resolution=16)
    result = evaluate_tokenizer(tiny_vqgan(16, codebook_size=16), data, rfid=False, progress=False)
    assert result["num_images"] == 6 and result["skipped_images"] == 1 and result["rfid"] is None


def test_demo_runs_the_whole_flow_in_quick_mode(tmp_path):
    result = run_script("demo.py", "--output_dir", tmp_path / "demo", "--quick", timeout=600)
    for name in ("reconstructions.png", "samples.png", "metrics.json", "pipeline/pipeline.json", "codes/manifest.json"):
        assert (tmp_path / "demo" / name).is_file(), name
    # The metrics are printed as indented JSON just before the "reconstructions:" line.
    lines = result.stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("reconstructions:"))
    start = max(i for i in range(end) if lines[i] == "{")
    printed = json.loads("\n".join(lines[start:end]))
    written = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert written["tokenizer"]["num_images"] == printed["tokenizer"]["num_images"] > 0
    assert VQGAN.from_pretrained(tmp_path / "demo" / "tokenizer").config.codebook_size == 256


@pytest.mark.parametrize("page", ["README.md", "docs/training.md"])
def test_python_snippets_of_the_readme_and_the_guide_run(page, tmp_path, monkeypatch):
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert snippets, f"{page} has no Python snippet"
    monkeypatch.chdir(tmp_path)
    tokenizer = tiny_vqgan(32, codebook_size=16)
    tokenizer.save_pretrained(tmp_path / "outputs" / "demo" / "tokenizer")  # what `make demo` leaves
    ImageGenerationPipeline(tokenizer, tiny_prior_for(tokenizer)).save_pretrained(tmp_path / "outputs" / "demo" / "pipeline")
    # The guide's tokenize example, on a few emoji.
    tokenize_dataset("outputs/demo/tokenizer", TokenizeDatasetConfig(
        dataset="emoji", output_dir="codes/emoji", max_images=40, num_workers=0, progress=False))
    if page == "README.md":  # what the README's two tessera convert commands write, at test size
        from tests.test_llamagen_prior import write_llamagen_pair

        write_llamagen_pair(tmp_path, tmp_path / "tokenizers" / "llamagen-vq16", tmp_path / "priors" / "llamagen-gpt-b")
    for code in snippets:
        exec(compile(code, page, "exec"), {})
