"""ImageGenerationPipeline end to end on tiny random models, generation metrics, and scripts/sample.py."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import ImageGenerationPipeline
from pipelines.evaluation import evaluate_generation
from tests.conftest import start_script, tiny_prior_for, tiny_vqgan, write_images
from tokenizer import VQGAN
from tokenizer.data import ImageDataConfig

NAMES = ("circle", "square", "star")


tiny_tokenizer = tiny_vqgan  # 16x16 images -> 4x4 codes of 32 entries


def tiny_prior(kind: str, tokenizer: VQGAN, **overrides):
    """A tiny prior of `kind` over `tokenizer`'s codes, with the three classes NAMES."""
    return tiny_prior_for(tokenizer, kind, seed=1, num_classes=3, class_names=NAMES, **overrides)


@pytest.fixture(params=["gpt", "pixelcnn"])
def pipe(request) -> ImageGenerationPipeline:
    tokenizer = tiny_tokenizer()
    return ImageGenerationPipeline(tokenizer, tiny_prior(request.param, tokenizer))


def test_every_output_type(pipe):
    out = pipe(3, class_labels=[0, 1, 2], generator=torch.Generator().manual_seed(0), output_type="pil")
    assert len(out.images) == 3 and all(isinstance(im, Image.Image) and im.size == (16, 16) for im in out.images)
    assert out.indices.shape == (3, 4, 4)
    arr = pipe(3, class_labels=[0, 1, 2], generator=torch.Generator().manual_seed(0), output_type="np").images
    assert arr.shape == (3, 16, 16, 3) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1  # diffusers
    pt = pipe(3, class_labels=[0, 1, 2], generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert pt.shape == (3, 3, 16, 16) and 0 <= float(pt.min()) and float(pt.max()) <= 1
    assert np.array_equal(np.asarray(out.images[1]), (arr[1] * 255).round().astype(np.uint8))
    assert np.array_equal(pt.permute(0, 2, 3, 1).numpy(), arr)


def test_images_are_the_decoded_indices(pipe):
    out = pipe(2, class_labels=0, generator=torch.Generator().manual_seed(3), output_type="pt")
    with torch.no_grad():
        decoded = (pipe.tokenizer.decode(out.indices).clamp(-1, 1) + 1) / 2
    assert torch.allclose(out.images, decoded, atol=1e-6)


def test_same_generator_same_images_and_class_names(pipe):
    a = pipe(4, class_labels="star", guidance_scale=2.0, generator=torch.Generator().manual_seed(5), output_type="pt")
    b = pipe(4, class_labels=[2, 2, 2, 2], guidance_scale=2.0, generator=torch.Generator().manual_seed(5), output_type="pt")
    assert torch.equal(a.indices, b.indices) and torch.equal(a.images, b.images)
    with pytest.raises(ValueError, match="class 'hexagon'"):
        pipe(1, class_labels="hexagon")


def test_cycled_class_labels_only_for_a_conditional_prior(pipe):
    assert pipe.cycled_class_labels(7) == [0, 1, 2, 0, 1, 2, 0]
    tokenizer = tiny_tokenizer()
    assert ImageGenerationPipeline(tokenizer, tiny_prior_for(tokenizer, "gpt", seed=1)).cycled_class_labels(7) is None


def test_chunking_keeps_greedy_results(pipe):
    whole = pipe(5, class_labels=1, top_k=1, output_type="pt", batch_size=64)
    chunked = pipe(5, class_labels=1, top_k=1, output_type="pt", batch_size=2)
    assert torch.equal(whole.indices, chunked.indices)


def test_compiled_sampling_same_images_or_a_clear_refusal(pipe, eager_compile):
    kwargs = dict(class_labels=[0, 2], guidance_scale=2.0, output_type="pt")
    if pipe.prior.prior_type == "pixelcnn":
        with pytest.raises(ValueError, match="only GPT priors"):
            pipe(2, compile=True, **kwargs)
        return
    compiled = pipe(2, compile=True, generator=torch.Generator().manual_seed(4), **kwargs)
    eager = pipe(2, generator=torch.Generator().manual_seed(4), **kwargs)
    assert torch.equal(compiled.indices, eager.indices) and torch.equal(compiled.images, eager.images)
    assert len(eager_compile) == 1


def test_completion_keeps_the_given_rows(pipe):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8))
    out = pipe(3, class_labels=0, prefix=(image, 2), generator=torch.Generator().manual_seed(0), output_type="pt")
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    from tokenizer.data import ImageTransform

    with torch.no_grad():
        codes = pipe.tokenizer.encode(ImageTransform(16)(pixels)[None])
    assert torch.equal(out.indices[:, :2], codes[:, :2].expand(3, -1, -1))
    given = torch.randint(0, 32, (3, 1, 4))
    assert torch.equal(pipe(3, class_labels=0, prefix=given).indices[:, :1], given)


def test_save_load_round_trip_gives_the_same_images(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = ImageGenerationPipeline.from_pretrained(tmp_path)
    assert type(loaded.prior) is type(pipe.prior)
    a = pipe(3, class_labels=[0, 1, 2], generator=torch.Generator().manual_seed(9), output_type="pt")
    b = loaded(3, class_labels=[0, 1, 2], generator=torch.Generator().manual_seed(9), output_type="pt")
    assert torch.equal(a.indices, b.indices) and torch.equal(a.images, b.images)


@pytest.mark.parametrize("overrides, match", [
    (dict(codebook_size=64), "codebook size: tokenizer 32, prior 64"),
    (dict(grid_shape=(8, 8)), r"grid: tokenizer \(4, 4\), prior \(8, 8\)"),
    (dict(tokenizer_fingerprint="0" * 64), "tokenizer fingerprint"),
])
def test_mismatched_pair_is_refused(overrides, match):
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match=match):
        ImageGenerationPipeline(tokenizer, tiny_prior("gpt", tokenizer, **overrides))


def test_bad_pipeline_folder(tmp_path):
    with pytest.raises(ValueError, match="pipeline.json is missing"):
        ImageGenerationPipeline.from_pretrained(tmp_path)
    (tmp_path / "pipeline.json").write_text('{"format": "tessera-pipeline", "version": 1, "prior_type": "os.system"}')
    with pytest.raises(ValueError, match="prior_type 'os.system'"):
        ImageGenerationPipeline.from_pretrained(tmp_path)


def test_sample_cli_writes_grid_and_images(tmp_path):
    tokenizer = tiny_tokenizer()
    ImageGenerationPipeline(tokenizer, tiny_prior("gpt", tokenizer)).save_pretrained(tmp_path / "pipe")
    # Both command forms at once: each process spends seconds importing.
    from_pipeline = start_script("sample.py", "--pipeline", tmp_path / "pipe", "--num_images", "5", "--class_label",
                                 "square", "--guidance_scale", "1.5", "--top_k", "10", "--out", tmp_path / "grid.png",
                                 "--out_dir", tmp_path / "each", "--batch_size", "2")
    from_parts = start_script("sample.py", "--tokenizer", tmp_path / "pipe" / "tokenizer", "--prior",
                              tmp_path / "pipe" / "prior", "--num_images", "2", "--out", tmp_path / "g2.png")
    for proc in (from_pipeline, from_parts):
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-4000:]
    assert Image.open(tmp_path / "grid.png").size[0] > 16 and len(list((tmp_path / "each").glob("*.png"))) == 5
    assert Image.open(tmp_path / "each" / "00004.png").size == (16, 16)
    assert Image.open(tmp_path / "g2.png").size[0] > 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["each", "g2.png", "grid.png", "pipe"]


def test_evaluate_generation_reports_the_protocol_with_floors_and_caches_features(tmp_path, monkeypatch):
    tokenizer = tiny_tokenizer()
    pipe = ImageGenerationPipeline(tokenizer, tiny_prior("gpt", tokenizer))
    root = tmp_path / "data"
    write_images(root / "train", 6, seed=1)
    write_images(root / "test", 6)
    data = ImageDataConfig(dataset=str(root), split="test", resolution=16)
    settings = dict(num_images=5, class_labels="uniform", guidance_scale=2.0, cache_dir=tmp_path / "cache", progress=False)
    first = evaluate_generation(pipe, data, **settings)
    assert {"fid", "kid_mean", "kid_std", "precision", "recall", "num_images"} <= first.keys()
    assert first["num_images"] == first["num_reference_images"] == 5
    assert np.isfinite(first["fid"]) and first["fid"] >= 0 and 0 <= first["precision"] <= 1
    assert first["kid_std"] > 1e-9  # KID subsets differ from one another (not every image each time)
    # Floors at the same count: 5 train images against the 5 test ones, and the tokenizer's reconstructions.
    real, recon = first["floor"]["real"], first["floor"]["tokenizer"]
    assert real["split"] == "train" and real["num_images"] == recon["num_images"] == 5
    assert {"fid", "kid_mean", "kid_std", "precision", "recall"} <= real.keys() & recon.keys()
    assert real["fid"] != recon["fid"]
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3  # test split, train split, reconstructions

    from pipelines import evaluation

    def no_reading(*a, **k):
        raise AssertionError("a split was read again instead of the cache")

    with monkeypatch.context() as patch:  # every feature set comes from the cache: no image is decoded again
        patch.setattr(evaluation, "split_images", no_reading)
        assert evaluate_generation(pipe, data, **settings) == first
    with torch.no_grad():  # another tokenizer: its reconstructions are not the cached ones
        pipe.tokenizer.decoder.last_layer.add_(0.1)
    assert evaluate_generation(pipe, data, **settings)["floor"]["tokenizer"] != recon
    with pytest.raises(ValueError, match="disjoint"):
        evaluate_generation(pipe, data, floor_split="test", **settings)


@pytest.mark.parametrize("architecture", ["vqvae2", "vae"])
def test_evaluate_generation_takes_a_two_level_and_a_vae_pipeline(architecture, tmp_path):
    """The protocol is the same call for every architecture: samples, the real floor and the tokenizer floor
    (for a VAE: decoding the posterior means)."""
    from tests.conftest import tiny_vae_config
    from tests.test_hierarchical_pipeline import priors_for
    from tests.test_vqvae2 import tiny_vqvae2
    from tokenizer import VAE

    if architecture == "vqvae2":
        tokenizer = tiny_vqvae2()
        pipe, labels = ImageGenerationPipeline(tokenizer, *priors_for(tokenizer, "gpt")), "uniform"
    else:
        torch.manual_seed(0)
        pipe, labels = ImageGenerationPipeline(VAE(tiny_vae_config()).eval()), None
    root = tmp_path / "data"
    write_images(root / "train", 4, seed=1)
    write_images(root / "test", 4)
    data = ImageDataConfig(dataset=str(root), split="test", resolution=16)
    metrics = evaluate_generation(pipe, data, num_images=4, class_labels=labels, batch_size=3, progress=False,
                                  cache_dir=tmp_path / "cache")
    assert metrics["num_images"] == metrics["num_reference_images"] == 4
    for scores in (metrics, metrics["floor"]["real"], metrics["floor"]["tokenizer"]):
        assert np.isfinite(scores["fid"]) and scores["fid"] >= 0 and 0 <= scores["precision"] <= 1
    assert metrics["fid"] != metrics["floor"]["tokenizer"]["fid"]
