"""Command lines and README snippets, run in-process on tiny models."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tokenizer import VQGAN, VQGANConfig
from tokenizer.quantizer import QuantizerConfig

ROOT = Path(__file__).resolve().parents[1]


def import_script(name: str):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def tiny_model(resolution: int = 32) -> VQGAN:
    torch.manual_seed(0)
    config = VQGANConfig.with_downsample_factor(
        4, resolution=resolution, channels=8, z_channels=8, quantizer=QuantizerConfig(codebook_size=16, code_dim=4)
    )
    return VQGAN(config).eval()


@pytest.fixture
def folder(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "pictures"
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "dogs" / "empty.png").write_bytes(b"")
    return root


def test_evaluate_cli_writes_all_keys(folder, tmp_path, capsys):
    tiny_model(16).save_pretrained(tmp_path / "tok")
    out = tmp_path / "eval.json"
    result = import_script("evaluate").main([
        "--tokenizer", str(tmp_path / "tok"), "--dataset", str(folder), "--split", "train",
        "--num_images", "4", "--batch_size", "3", "--output_json", str(out),
    ])
    written = json.loads(out.read_text())
    assert {"psnr", "ssim", "codebook_usage", "perplexity", "rfid"} <= written.keys()
    assert written["num_images"] == 4 and np.isfinite(written["rfid"]) and written["rfid"] >= 0
    assert 0 < written["codebook_usage"] <= 1 and result == written
    assert '"psnr"' in capsys.readouterr().out


def test_evaluate_counts_unreadable_images(folder, tmp_path):
    tiny_model(16).save_pretrained(tmp_path / "tok")
    result = import_script("evaluate").main([
        "--tokenizer", str(tmp_path / "tok"), "--dataset", str(folder), "--split", "train", "--no_rfid",
    ])
    assert result["num_images"] == 6 and result["skipped_images"] == 1 and result["rfid"] is None


def test_evaluate_rejects_a_folder_without_weights(tmp_path, folder):
    tiny_model().save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors is missing"):
        import_script("evaluate").main(["--tokenizer", str(tmp_path / "tok"), "--dataset", str(folder)])


def test_demo_runs_the_whole_flow_in_quick_mode(tmp_path):
    metrics = import_script("demo").main(["--output_dir", str(tmp_path / "demo"), "--quick"])
    for name in ("reconstructions.png", "samples.png", "metrics.json", "pipeline/pipeline.json", "codes/manifest.json"):
        assert (tmp_path / "demo" / name).is_file(), name
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["tokenizer"]["num_images"] == metrics["tokenizer"]["num_images"] > 0
    assert VQGAN.from_pretrained(tmp_path / "demo" / "tokenizer").config.codebook_size == 256


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert snippets, "README has no Python snippet"
    monkeypatch.chdir(tmp_path)
    tokenizer = tiny_model()
    tokenizer.save_pretrained(tmp_path / "outputs" / "demo" / "tokenizer")  # what `make demo` leaves
    from pipelines import ImageGenerationPipeline
    from prior import GPTPrior, GPTPriorConfig

    prior = GPTPrior(GPTPriorConfig.from_preset("tiny", codebook_size=16, grid_shape=(8, 8),
                                                tokenizer_fingerprint=tokenizer.fingerprint()))
    ImageGenerationPipeline(tokenizer, prior).save_pretrained(tmp_path / "outputs" / "demo" / "pipeline")
    import_script("tokenize_dataset").main([  # the README's tokenize example, on a few emoji
        "--tokenizer", "outputs/demo/tokenizer", "--dataset", "emoji", "--max_images", "40",
        "--output_dir", "codes/emoji", "--num_workers", "0", "--no_progress",
    ])
    for code in snippets:
        exec(compile(code, "README.md", "exec"), {})
