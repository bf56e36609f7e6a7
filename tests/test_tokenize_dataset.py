"""pipelines.tokenize_dataset on a tiny tokenizer: round trip, labels, flips, resume after a kill; its command line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipelines import TokenizeDatasetConfig, tokenize_dataset
from prior import CodesDataset
from tests.conftest import ROOT, run_script, start_script, tiny_vqgan, tiny_vqvae2_config, write_images
from tokenizer import VQGAN, VQVAE2
from tokenizer.data import ImageDataConfig, build_image_dataset


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3 classes x 7 images + one corrupt file: 21 readable inputs, 5 shards of 5."""
    root = write_images(tmp_path_factory.mktemp("data") / "pictures", 7, classes=("ants", "bees", "cats"))
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


def small_run(folder, out, **overrides) -> TokenizeDatasetConfig:
    settings = dict(dataset=str(folder), output_dir=str(out), batch_size=4, shard_size=5, num_workers=0, progress=False)
    return TokenizeDatasetConfig(**{**settings, **overrides})


def test_round_trip_labels_and_skipped(tokenizer_dir, folder, tmp_path):
    out = tmp_path / "codes"
    manifest = tokenize_dataset(tokenizer_dir, small_run(folder, out))
    codes, labels = expected_codes(tokenizer_dir, folder)
    ds = CodesDataset(out, tokenizer=VQGAN.from_pretrained(tokenizer_dir))
    assert len(ds) == 21 and manifest["count"] == 21
    assert torch.equal(torch.stack([ds[i][0] for i in range(len(ds))]), codes)
    assert [ds[i][1] for i in range(len(ds))] == labels
    assert ds.class_names == ["ants", "bees", "cats"] and ds.num_classes == 3
    assert manifest["dtype"] == "uint16" and manifest["grid_shapes"] == [[4, 4]]
    assert manifest["num_skipped"] == 1 and manifest["skipped"][0][0] == "bees/3_corrupt.png"
    assert len(manifest["shards"]) == 5 and manifest["source"]["dataset"] == str(folder)
    assert manifest["tokenizer_dir"] == str(Path(tokenizer_dir).resolve())
    summary = manifest.pop("summary")  # the printed run summary is returned beside the manifest, not written into it
    assert summary["count"] == 21 and summary["images_per_s"] > 0
    assert manifest == json.loads((out / "manifest.json").read_text())
    ds.verify()


def test_a_model_object_gives_the_same_codes(tokenizer_dir, folder, tmp_path):
    tokenize_dataset(tokenizer_dir, small_run(folder, tmp_path / "from_dir"))
    manifest = tokenize_dataset(VQGAN.from_pretrained(tokenizer_dir), small_run(folder, tmp_path / "from_model"))
    assert "tokenizer_dir" not in manifest  # nothing to record: the model came without a folder
    for name in sorted(p.name for p in (tmp_path / "from_dir").glob("shard-*.npy")):
        assert (tmp_path / "from_model" / name).read_bytes() == (tmp_path / "from_dir" / name).read_bytes(), name


def test_flip_stores_mirrored_codes(tokenizer_dir, folder, tmp_path):
    out = tmp_path / "codes"
    tokenize_dataset(tokenizer_dir, small_run(folder, out, flip=True))
    ds = CodesDataset(out, include_flipped=True)
    mirrored, _ = expected_codes(tokenizer_dir, folder, flip=True)
    assert len(ds) == 42
    assert torch.equal(torch.stack([ds[21 + i][0] for i in range(21)]), mirrored)


def test_other_tokenizer_is_refused(tokenizer_dir, folder, tmp_path):
    out = tmp_path / "codes"
    tokenize_dataset(tokenizer_dir, small_run(folder, out))
    other = VQGAN.from_pretrained(tokenizer_dir)
    with torch.no_grad():
        other.decoder.conv_out.bias.add_(0.1)
    with pytest.raises(ValueError, match="made by tokenizer"):
        CodesDataset(out, tokenizer=other)


def test_hub_loader_path_with_imagefolder(tokenizer_dir, folder, tmp_path):
    """A Hugging Face dataset name goes through datasets.load_dataset (the imagefolder builder works offline)."""
    out = tmp_path / "codes"
    manifest = tokenize_dataset(tokenizer_dir, small_run("imagefolder", out, data_dir=str(folder)))
    assert manifest["count"] == 21 and manifest["num_skipped"] == 1
    assert CodesDataset(out).class_names == ["ants", "bees", "cats"]


def test_a_streamed_split_gives_the_codes_of_the_downloaded_one(tokenizer_dir, folder, tmp_path):
    """--streaming reads the split row by row (datasets' IterableDataset: nothing downloaded first): the same
    codes, labels and skipped rows as the split read whole, with two workers asked for (it reads in one) and a
    process that resumes after a shard was lost."""
    whole = tokenize_dataset(tokenizer_dir, small_run("imagefolder", tmp_path / "whole", data_dir=str(folder)))
    streamed_run = small_run("imagefolder", tmp_path / "streamed", data_dir=str(folder), streaming=True,
                             max_images=22, num_workers=2)
    streamed = tokenize_dataset(tokenizer_dir, streamed_run)
    assert streamed["count"] == whole["count"] == 21 and streamed["skipped"] == whole["skipped"]
    a, b = CodesDataset(tmp_path / "whole"), CodesDataset(tmp_path / "streamed")
    assert b.class_names == a.class_names
    assert all(torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1] for i in range(len(a)))
    for lost in (tmp_path / "streamed").glob("shard-00002.*"):
        lost.unlink()
    again = tokenize_dataset(tokenizer_dir, streamed_run)  # only the missing shard is read and written again
    c = CodesDataset(tmp_path / "streamed")
    assert again["count"] == 21 and all(torch.equal(a[i][0], c[i][0]) for i in range(len(a)))


def test_a_stream_of_unknown_length_needs_max_images(tokenizer_dir, folder, tmp_path, monkeypatch):
    import datasets

    load = datasets.load_dataset

    def without_sizes(*args, **kwargs):  # a data set whose card gives no split sizes
        stream = load(*args, **kwargs)
        stream.info.splits = None
        return stream

    monkeypatch.setattr(datasets, "load_dataset", without_sizes)
    with pytest.raises(ValueError, match="does not say how many images it holds: give max_images"):
        tokenize_dataset(tokenizer_dir, small_run("imagefolder", tmp_path, data_dir=str(folder), streaming=True))


@pytest.mark.parametrize("overrides, match", [
    (dict(shard_size=0), "shard_size=0: expected a positive integer"),
    (dict(batch_size=-1), "batch_size=-1: expected a positive integer"),
    (dict(num_workers=-1), "num_workers=-1: expected an integer >= 0"),
    (dict(resize_mode="stretch"), "resize_mode must be one of"),
    (dict(max_images=0), "max_images must be None or >= 1"),
    (dict(output_dir=""), "output_dir is empty"),
])
def test_bad_settings_are_value_errors(folder, tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        small_run(folder, tmp_path, **overrides)


def test_bad_tokenizer_folder_fails_before_writing(folder, tmp_path):
    tiny_vqgan().save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors is missing"):
        tokenize_dataset(tmp_path / "tok", small_run(folder, tmp_path / "codes"))
    assert not (tmp_path / "codes").exists()


def test_rerun_with_other_settings_is_refused(tokenizer_dir, folder, tmp_path):
    tokenize_dataset(tokenizer_dir, small_run(folder, tmp_path))
    with pytest.raises(ValueError, match=r"different settings \(flipped\)"):
        tokenize_dataset(tokenizer_dir, small_run(folder, tmp_path, flip=True))


KILLABLE = """
import sys, time
from pipelines import dataset_tokenizing
from tests.test_tokenize_dataset import small_run
original = dataset_tokenizing.encode_range
calls = []
def slow(*args, **kwargs):
    calls.append(1)
    if len(calls) > 1:
        time.sleep(3)  # the first shard is written at once; the kill lands during the second
    return original(*args, **kwargs)
dataset_tokenizing.encode_range = slow
dataset_tokenizing.tokenize_dataset(sys.argv[1], small_run(sys.argv[2], sys.argv[3]))
"""


@pytest.fixture(scope="module")
def two_level_tokenizer_dir(tmp_path_factory) -> Path:
    """A saved tiny VQ-VAE-2 (16x16 images -> 2x2 top and 4x4 bottom codes)."""
    path = tmp_path_factory.mktemp("two-level-tokenizer")
    torch.manual_seed(0)
    VQVAE2(tiny_vqvae2_config()).save_pretrained(path)
    return path


@pytest.mark.parametrize("which", ["tokenizer_dir", "two_level_tokenizer_dir"])
def test_resume_after_sigkill_gives_the_same_codes(which, folder, tmp_path, capsys, request):
    tokenizer_dir = request.getfixturevalue(which)
    reference = tmp_path / "reference"
    tokenize_dataset(tokenizer_dir, small_run(folder, reference))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(tokenizer_dir), str(folder), str(killed)],
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

    capsys.readouterr()
    manifest = tokenize_dataset(tokenizer_dir, small_run(folder, killed))
    assert "resuming: 1 of 5 shards already complete" in capsys.readouterr().out
    assert manifest["count"] == 21
    arrays = sorted(p.name for p in reference.glob("shard-*.npy"))
    assert len(arrays) == 5 * (2 if which == "tokenizer_dir" else 3)  # codes (one array per level) and labels
    for name in arrays:
        assert (killed / name).read_bytes() == (reference / name).read_bytes(), name
    ref_manifest = json.loads((reference / "manifest.json").read_text())
    assert [s["files"] for s in manifest["shards"]] == [s["files"] for s in ref_manifest["shards"]]


def test_command_line_run_summary_and_error_line(tokenizer_dir, folder, tmp_path):
    """The script as a user runs it: a JSON summary line on success, one `error:` line for a bad rerun."""
    out, earlier = tmp_path / "codes", tmp_path / "earlier"
    tokenize_dataset(tokenizer_dir, small_run(folder, earlier))  # a run without --flip, refused below
    args = ["--tokenizer", tokenizer_dir, "--dataset", folder, "--batch_size", "4", "--shard_size", "5",
            "--num_workers", "0", "--no_progress", "--flip"]
    # Both at once: each process spends seconds importing.
    refusing = start_script("tokenize_dataset.py", *args, "--output_dir", earlier)
    result = run_script("tokenize_dataset.py", *args, "--output_dir", out)
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("skipped 1 unreadable inputs (first: bees/3_corrupt.png: ")
    summary = json.loads(lines[-1])
    assert summary["count"] == 21 and summary["skipped"] == 1 and summary["shards"] == 5
    assert summary["dtype"] == "uint16" and summary["grid"] == [4, 4] and summary["output_dir"] == str(out)
    assert {"seconds", "images_per_s", "peak_rss_mb"} <= summary.keys()
    ds = CodesDataset(out, include_flipped=True)
    assert torch.equal(torch.stack([ds[21 + i][0] for i in range(21)]), expected_codes(tokenizer_dir, folder, flip=True)[0])

    _, stderr = refusing.communicate(timeout=300)
    assert refusing.returncode == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: ")
    assert "different settings (flipped)" in stderr
