"""scripts/tokenize_dataset.py end to end on a tiny tokenizer: round trip, labels, flips, resume after a kill."""

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

from prior import CodesDataset
from tokenizer import VQGAN, VQGANConfig
from tokenizer.data import ImageDataConfig, build_image_dataset
from tokenizer.quantizer import QuantizerConfig

ROOT = Path(__file__).resolve().parents[1]


def tokenize(argv):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import tokenize_dataset
    finally:
        sys.path.pop(0)
    return tokenize_dataset.main(argv)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = VQGANConfig.with_downsample_factor(
        4, resolution=16, channels=8, z_channels=8, quantizer=QuantizerConfig(codebook_size=64, code_dim=4)
    )
    path = tmp_path_factory.mktemp("tok")
    VQGAN(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("data") / "pictures"
    for c, cls in enumerate(("ants", "bees", "cats")):
        (root / cls).mkdir(parents=True)
        for i in range(7):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            pixels[:, : 3 + 4 * c] = 0
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    (root / "bees" / "3_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


def expected_codes(tokenizer_dir, folder, flip=False):
    model = VQGAN.from_pretrained(tokenizer_dir)
    dataset = build_image_dataset(ImageDataConfig(dataset=str(folder), resolution=16))
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([it["image"] for it in items if "image" in it])
    with torch.no_grad():
        codes = model.encode(images.flip(-1) if flip else images)
    return codes, [it["label"] for it in items if "image" in it]


def base_args(tokenizer_dir, folder, out):
    return ["--tokenizer", str(tokenizer_dir), "--dataset", str(folder), "--output_dir", str(out),
            "--batch_size", "4", "--shard_size", "5", "--num_workers", "0", "--no_progress"]


def test_round_trip_labels_and_skipped(tokenizer_dir, folder, tmp_path):
    out = tmp_path / "codes"
    manifest = tokenize(base_args(tokenizer_dir, folder, out))
    codes, labels = expected_codes(tokenizer_dir, folder)
    ds = CodesDataset(out, tokenizer=VQGAN.from_pretrained(tokenizer_dir))
    assert len(ds) == 21 and manifest["count"] == 21
    assert torch.equal(torch.stack([ds[i][0] for i in range(len(ds))]), codes)
    assert [ds[i][1] for i in range(len(ds))] == labels
    assert ds.class_names == ["ants", "bees", "cats"] and ds.num_classes == 3
    assert manifest["dtype"] == "uint16" and manifest["grid_shapes"] == [[4, 4]]
    assert manifest["num_skipped"] == 1 and manifest["skipped"][0][0] == "bees/3_corrupt.png"
    assert len(manifest["shards"]) == 5 and manifest["source"]["dataset"] == str(folder)
    ds.verify()


def test_flip_stores_mirrored_codes(tokenizer_dir, folder, tmp_path):
    out = tmp_path / "codes"
    tokenize(base_args(tokenizer_dir, folder, out) + ["--flip"])
    ds = CodesDataset(out, include_flipped=True)
    mirrored, _ = expected_codes(tokenizer_dir, folder, flip=True)
    assert len(ds) == 42
    assert torch.equal(torch.stack([ds[21 + i][0] for i in range(21)]), mirrored)


def test_other_tokenizer_is_refused(tokenizer_dir, folder, tmp_path):
    out = tmp_path / "codes"
    tokenize(base_args(tokenizer_dir, folder, out))
    other = VQGAN.from_pretrained(tokenizer_dir)
    with torch.no_grad():
        other.decoder.conv_out.bias.add_(0.1)
    with pytest.raises(ValueError, match="made by tokenizer"):
        CodesDataset(out, tokenizer=other)


def test_hub_loader_path_with_imagefolder(tokenizer_dir, folder, tmp_path):
    """A Hugging Face dataset name goes through datasets.load_dataset (the imagefolder builder works offline)."""
    out = tmp_path / "codes"
    args = base_args(tokenizer_dir, "imagefolder", out) + ["--data_dir", str(folder)]
    manifest = tokenize(args)
    assert manifest["count"] == 21 and manifest["num_skipped"] == 1
    assert CodesDataset(out).class_names == ["ants", "bees", "cats"]


KILLABLE = """
import sys, time
sys.path.insert(0, sys.argv[1] + "/scripts")
import tokenize_dataset
from tokenizer import encoding
original = encoding.encode_range
calls = []
def slow(*args, **kwargs):
    calls.append(1)
    if len(calls) > 1:
        time.sleep(3)  # the first shard is written at once; the kill lands during the second
    return original(*args, **kwargs)
tokenize_dataset.encode_range = slow
tokenize_dataset.main(sys.argv[2:])
"""


def test_resume_after_sigkill_gives_the_same_codes(tokenizer_dir, folder, tmp_path):
    reference = tmp_path / "reference"
    tokenize(base_args(tokenizer_dir, folder, reference))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(ROOT), *base_args(tokenizer_dir, folder, killed)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not (killed / "shard-00000.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists()
    with pytest.raises(ValueError, match="tokenizing did not finish"):
        CodesDataset(killed)
    (killed / "shard-00001.codes.npy.tmp").write_bytes(b"half-written")  # as a kill mid-write leaves it

    manifest = tokenize(base_args(tokenizer_dir, folder, killed))
    assert manifest["count"] == 21
    for name in sorted(p.name for p in reference.glob("shard-*.npy")):
        assert (killed / name).read_bytes() == (reference / name).read_bytes(), name
    ref_manifest = json.loads((reference / "manifest.json").read_text())
    assert [s["files"] for s in manifest["shards"]] == [s["files"] for s in ref_manifest["shards"]]


def test_help_explains_flags():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "tokenize_dataset.py"), "--help"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "--shard_size" in result.stdout and "--flip" in result.stdout
