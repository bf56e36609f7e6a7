"""The index-file format on its own: writer → reader round trips and every validation error."""

import json
import os

import numpy as np
import pytest
import torch

from prior import CodesDataset, CodesWriter
from prior.index_files import code_dtype
from tests.conftest import make_codes  # also imported from here by tests/test_prior_training.py


def test_round_trip_codes_and_labels(tmp_path):
    codes, labels = make_codes(tmp_path)
    ds = CodesDataset(tmp_path)
    assert len(ds) == 25 and ds.grid_shape == (2, 3) and ds.codebook_size == 50 and ds.num_classes == 4
    for i in range(25):
        c, label = ds[i]
        assert c.dtype == torch.long and torch.equal(c, torch.from_numpy(codes[i]))
        assert label == labels[i]
    assert np.array_equal(ds.labels(), labels)
    ds.verify()


def test_no_labels_gives_minus_one(tmp_path):
    make_codes(tmp_path, labels=False)
    ds = CodesDataset(tmp_path)
    assert ds[3][1] == -1 and ds.num_classes == 0


def test_flipped_codes_double_the_items(tmp_path):
    codes, _ = make_codes(tmp_path, flipped=True)
    ds = CodesDataset(tmp_path, include_flipped=True)
    assert len(ds) == 50
    assert torch.equal(ds[25 + 4][0], torch.from_numpy(codes[4, :, ::-1].copy()))
    assert len(CodesDataset(tmp_path)) == 25


def test_train_validation_split_is_fixed_and_disjoint(tmp_path):
    make_codes(tmp_path, n=100)
    train = CodesDataset(tmp_path, split="train", validation_fraction=0.1, seed=3)
    val = CodesDataset(tmp_path, split="validation", validation_fraction=0.1, seed=3)
    assert len(train) == 90 and len(val) == 10
    assert not set(train.indices) & set(val.indices)
    assert np.array_equal(val.indices, CodesDataset(tmp_path, split="validation", validation_fraction=0.1, seed=3).indices)
    assert not np.array_equal(val.indices, CodesDataset(tmp_path, split="validation", validation_fraction=0.1, seed=4).indices)


def test_dtype_follows_codebook_size():
    assert code_dtype(65536) == np.uint16 and code_dtype(65537) == np.uint32


def test_wide_codebook_round_trip(tmp_path):
    codes, _ = make_codes(tmp_path, codebook_size=70_000)
    ds = CodesDataset(tmp_path)
    assert ds.manifest["dtype"] == "uint32"
    assert torch.equal(ds[7][0], torch.from_numpy(codes[7]))


def test_missing_manifest(tmp_path):
    with pytest.raises(ValueError, match="manifest.json is missing"):
        CodesDataset(tmp_path)


def edit_manifest(tmp_path, change):
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_unknown_version(tmp_path):
    make_codes(tmp_path)
    edit_manifest(tmp_path, lambda m: m.update(version=99))
    with pytest.raises(ValueError, match="version 99"):
        CodesDataset(tmp_path)


def test_truncated_shard(tmp_path):
    make_codes(tmp_path)
    path = tmp_path / "shard-00001.codes.npy"
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(ValueError, match="shard-00001.codes.npy has .* bytes; the manifest says"):
        CodesDataset(tmp_path)


def test_missing_shard(tmp_path):
    make_codes(tmp_path)
    (tmp_path / "shard-00002.labels.npy").unlink()
    with pytest.raises(ValueError, match="shard-00002.labels.npy is missing"):
        CodesDataset(tmp_path)


def test_grid_inconsistent_with_manifest(tmp_path):
    make_codes(tmp_path)
    edit_manifest(tmp_path, lambda m: m.update(grid_shapes=[[3, 2]]))
    with pytest.raises(ValueError, match=r"shard-00000.codes.npy: array \(10, 2, 3\).*expected \(10, 3, 2\)"):
        CodesDataset(tmp_path)


def test_dtype_inconsistent_with_codebook(tmp_path):
    make_codes(tmp_path)
    edit_manifest(tmp_path, lambda m: m.update(codebook_size=100_000))
    with pytest.raises(ValueError, match="dtype uint16 does not fit codebook size 100000"):
        CodesDataset(tmp_path)


def test_code_values_at_or_above_codebook_size(tmp_path):
    make_codes(tmp_path)
    edit_manifest(tmp_path, lambda m: m.update(codebook_size=10))  # stored codes go up to 49
    ds = CodesDataset(tmp_path)  # opening is cheap: values are checked when a shard is first read
    with pytest.raises(ValueError, match="shard-00000.codes.npy: code 4[0-9] is not below the codebook size 10"):
        ds[0]


def test_a_changed_shard_is_refused_when_first_read_unless_checksums_are_skipped(tmp_path):
    codes, _ = make_codes(tmp_path)
    path = tmp_path / "shard-00002.codes.npy"
    data = bytearray(path.read_bytes())
    data[-2] = (data[-2] + 1) % 40  # the last code's low byte: same size, other content, still a valid code
    path.write_bytes(bytes(data))
    ds = CodesDataset(tmp_path)
    ds[0]  # shard 0 is untouched
    changed = ds._offsets[3] - 1  # the last image of shard 2
    with pytest.raises(ValueError, match="shard-00002.codes.npy: its sha256 does not match the manifest's"):
        ds[changed]
    with pytest.raises(ValueError, match="shard-00002.codes.npy: its sha256 does not match"):
        CodesDataset(tmp_path).verify()
    unchecked = CodesDataset(tmp_path, verify_checksums=False)
    assert not torch.equal(unchecked[changed][0], torch.from_numpy(codes[changed]))  # read as it now is


@pytest.mark.parametrize("name", ["../outside.codes.npy", "/tmp/outside.codes.npy", "sub/x.npy", "..", 7])
def test_shard_file_names_outside_the_codes_folder_are_refused(tmp_path, name):
    make_codes(tmp_path)
    edit_manifest(tmp_path, lambda m: m["shards"][1]["files"]["codes"].update(path=name))
    with pytest.raises(ValueError, match=r"file name .*expected a plain file name inside"):
        CodesDataset(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(count=m["count"] + 3), r"count=28, but its shards hold 25 images"),
    (lambda m: m.pop("grid_shapes"), r"grid_shapes=None; expected list"),
    (lambda m: m.update(has_labels="yes"), r"has_labels='yes'; expected bool"),
    (lambda m: m["shards"][0].pop("count"), r"shards\[0\] has no int 'count'"),
])
def test_a_manifest_with_missing_or_inconsistent_fields_is_named(tmp_path, edit, message):
    make_codes(tmp_path)
    edit_manifest(tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        CodesDataset(tmp_path)


def test_other_tokenizer_refused(tmp_path):
    make_codes(tmp_path, fingerprint="ab" * 32)
    CodesDataset(tmp_path, fingerprint="ab" * 32)
    with pytest.raises(ValueError, match="made by tokenizer abababababab.*not by the given tokenizer cdcdcdcdcdcd"):
        CodesDataset(tmp_path, fingerprint="cd" * 32)


def test_rerun_with_other_settings_refused(tmp_path):
    make_codes(tmp_path)
    writer = CodesWriter(tmp_path, {
        "codebook_size": 50, "grid_shapes": [[2, 3]], "shard_size": 7, "num_inputs": 25,
        "has_labels": True, "flipped": False, "tokenizer_fingerprint": "ab" * 32,
    })
    with pytest.raises(ValueError, match="different settings \\(shard_size\\)"):
        writer.start()


def test_writer_rejects_out_of_range_codes(tmp_path):
    writer = CodesWriter(tmp_path, {
        "codebook_size": 5, "grid_shapes": [[2, 2]], "shard_size": 4, "num_inputs": 4,
        "has_labels": False, "flipped": False, "tokenizer_fingerprint": "x",
    })
    writer.start()
    with pytest.raises(ValueError, match="code 5 >= codebook_size 5"):
        writer.write_shard(0, np.full((4, 2, 2), 5), None, None, [])


def test_workers_reopen_memory_maps(tmp_path):
    codes, _ = make_codes(tmp_path)
    loader = torch.utils.data.DataLoader(CodesDataset(tmp_path), batch_size=5, num_workers=2)
    got = torch.cat([batch[0] for batch in loader])
    assert torch.equal(got, torch.from_numpy(codes))


def test_two_level_writer_checks_each_level_and_a_one_level_folder_takes_no_level(tmp_path):
    writer = CodesWriter(tmp_path / "two", {
        "codebook_sizes": [4, 300], "grid_shapes": [[1, 1], [2, 2]], "shard_size": 2, "num_inputs": 2,
        "has_labels": False, "flipped": False, "tokenizer_fingerprint": "x",
    })
    assert writer.plan["dtype"] == "uint16"
    writer.start()
    with pytest.raises(ValueError, match="1 codes arrays; expected one per level \\(2\\)"):
        writer.write_shard(0, np.zeros((2, 2, 2)), None, None, [])
    with pytest.raises(ValueError, match="\\(top level\\): code 4 >= codebook_size 4"):
        writer.write_shard(0, [np.full((2, 1, 1), 4), np.zeros((2, 2, 2))], None, None, [])
    with pytest.raises(ValueError, match="\\(bottom level\\): codes of shape \\(2, 1, 1\\)"):
        writer.write_shard(0, [np.zeros((2, 1, 1)), np.zeros((2, 1, 1))], None, None, [])
    writer.write_shard(0, [np.full((2, 1, 1), 3), np.full((2, 2, 2), 299)], None, None, [])
    writer.write_manifest({})
    bottom = CodesDataset(tmp_path / "two", level="bottom")
    codes, label, context = bottom[1]
    assert codes.tolist() == [[299, 299], [299, 299]] and label == -1 and context.tolist() == [[3]]
    make_codes(tmp_path / "one")
    with pytest.raises(ValueError, match="holds one code grid per image"):
        CodesDataset(tmp_path / "one", level="top")


def test_a_shard_is_hashed_once_per_process_until_it_changes(tmp_path, monkeypatch):
    from prior import index_files

    make_codes(tmp_path)
    CodesDataset(tmp_path).verify()
    hashed = []
    monkeypatch.setattr(index_files, "_sha256", lambda path: hashed.append(path.name) or "not read")
    CodesDataset(tmp_path).verify()  # a second dataset over the same files (the validation split, say)
    assert hashed == []
    path = tmp_path / "shard-00001.codes.npy"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: a new modification time
    with pytest.raises(ValueError, match="shard-00001.codes.npy: its sha256 does not match"):
        CodesDataset(tmp_path).verify()
    assert hashed == ["shard-00001.codes.npy"]
