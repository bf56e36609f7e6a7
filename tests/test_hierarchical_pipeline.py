"""ImageGenerationPipeline with a two-level (VQ-VAE-2) tokenizer: the top grid, then the bottom grid given it,
then both decoded; files, pair checks per level, completion from a partial image, and scripts/sample.py."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import ImageGenerationPipeline
from tests.conftest import PRIORS, run_script, start_script, write_images
from tests.test_vqvae2 import images, tiny_vqvae2

NAMES = ("circle", "square")


def priors_for(tokenizer, kind: str, seed: int = 1) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Tiny top and bottom priors of `kind` over `tokenizer`'s two levels, with the classes NAMES."""
    model_cls, config_cls = PRIORS[kind]
    (top_grid, bottom_grid), (top_k, bottom_k) = tokenizer.config.grid_shapes, tokenizer.config.codebook_sizes
    shared = dict(num_classes=2, class_names=NAMES, tokenizer_fingerprint=tokenizer.fingerprint())
    torch.manual_seed(seed)
    top = model_cls(config_cls.from_preset("tiny", codebook_size=top_k, grid_shape=top_grid, **shared)).eval()
    bottom = model_cls(config_cls.from_preset("tiny", codebook_size=bottom_k, grid_shape=bottom_grid,
                                              context_codebook_size=top_k, context_grid_shape=top_grid, **shared)).eval()
    return top, bottom


@pytest.fixture(params=["gpt", "pixelcnn"])
def pipe(request) -> ImageGenerationPipeline:
    tokenizer = tiny_vqvae2()
    return ImageGenerationPipeline(tokenizer, *priors_for(tokenizer, request.param))


def test_samples_are_both_levels_decoded_in_every_output_type(pipe):
    out = pipe(3, class_labels=["circle", "square", 0], guidance_scale=1.5, generator=torch.Generator().manual_seed(0),
               output_type="pt")
    top, bottom = out.indices
    assert top.shape == (3, 2, 2) and bottom.shape == (3, 4, 4) and out.images.shape == (3, 3, 16, 16)
    with torch.no_grad():
        decoded = (pipe.tokenizer.decode((top, bottom)).clamp(-1, 1) + 1) / 2
    assert torch.allclose(out.images, decoded, atol=1e-6)
    pil = pipe(3, class_labels=["circle", "square", 0], guidance_scale=1.5, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(np.asarray(pil.images[2]), (out.images[2].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    arrays = pipe(3, class_labels=["circle", "square", 0], guidance_scale=1.5, generator=torch.Generator().manual_seed(0),
                  output_type="np")
    expected = out.images.permute(0, 2, 3, 1).numpy()  # (3, 16, 16, 3) float32 in [0, 1]
    assert arrays.images.dtype == np.float32 and np.array_equal(arrays.images, expected)
    chunked = pipe(3, class_labels=["circle", "square", 0], guidance_scale=1.5, top_k=1, output_type="pt", batch_size=2)
    whole = pipe(3, class_labels=["circle", "square", 0], guidance_scale=1.5, top_k=1, output_type="pt")
    assert all(torch.equal(a, b) for a, b in zip(chunked.indices, whole.indices))


def test_the_bottom_grid_is_written_for_the_sampled_top_grid(pipe):
    """Same seed, but the top prior's codes forced by a prefix: other top grids, other bottom grids."""
    first = pipe(4, class_labels=0, top_k=1, output_type="pt")
    forced = ((first.indices[0] + 1) % pipe.tokenizer.config.codebook_sizes[0], None)
    other = pipe(4, class_labels=0, top_k=1, prefix=forced, output_type="pt")
    assert torch.equal(other.indices[0], forced[0]) and not torch.equal(other.indices[1], first.indices[1])


def test_completion_keeps_the_top_rows_and_the_bottom_rows_they_cover(pipe):
    image = images(count=1)[0]  # (3, 16, 16) in [-1, 1]
    with torch.no_grad():
        top, bottom = pipe.tokenizer.encode(image[None])
    out = pipe(3, prefix=(image, 1), generator=torch.Generator().manual_seed(2), output_type="pt")
    assert torch.equal(out.indices[0][:, :1], top[:, :1].expand(3, 1, 2))
    assert torch.equal(out.indices[1][:, :2], bottom[:, :2].expand(3, 2, 4))
    given = (top[:, :1], bottom[:, :1])  # code prefixes per level, shared by all images
    out = pipe(2, prefix=given, output_type="pt")
    assert torch.equal(out.indices[0][:, :1], top[:, :1].expand(2, 1, 2))
    with pytest.raises(ValueError, match="a prefix of 1 code grids"):
        pipe(2, prefix=[top[:, :1]])


def test_save_load_round_trip_gives_the_same_images(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "bottom_prior" / "model.safetensors").is_file()
    loaded = ImageGenerationPipeline.from_pretrained(tmp_path)
    a = pipe(2, class_labels=1, generator=torch.Generator().manual_seed(4), output_type="pt")
    b = loaded(2, class_labels=1, generator=torch.Generator().manual_seed(4), output_type="pt")
    assert torch.equal(a.images, b.images) and all(torch.equal(x, y) for x, y in zip(a.indices, b.indices))


def test_pairs_are_checked_per_level():
    tokenizer = tiny_vqvae2()
    top, bottom = priors_for(tokenizer, "gpt")
    with pytest.raises(ValueError, match="expected a top prior and a bottom_prior"):
        ImageGenerationPipeline(tokenizer, top)
    with pytest.raises(ValueError, match="the tokenizer and the top prior do not belong together: codebook size"):
        ImageGenerationPipeline(tokenizer, bottom, top)
    other_top, other_bottom = priors_for(tiny_vqvae2(seed=5), "pixelcnn")
    with pytest.raises(ValueError, match="bottom prior do not belong together: tokenizer fingerprint"):
        ImageGenerationPipeline(tokenizer, top, other_bottom)
    _, plain = priors_for(tokenizer, "gpt")
    plain.config.context_grid_shape, plain.config.context_codebook_size = (), 0
    with pytest.raises(ValueError, match="context: the prior reads no top grid"):
        ImageGenerationPipeline(tokenizer, top, plain)


def test_sample_cli_with_a_bottom_prior(tmp_path):
    tokenizer = tiny_vqvae2()
    ImageGenerationPipeline(tokenizer, *priors_for(tokenizer, "gpt")).save_pretrained(tmp_path / "pipe")
    proc = start_script("sample.py", "--tokenizer", tmp_path / "pipe" / "tokenizer", "--prior", tmp_path / "pipe" / "prior",
                        "--bottom_prior", tmp_path / "pipe" / "bottom_prior", "--num_images", "3", "--class_label",
                        "square", "--out", tmp_path / "grid.png")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-4000:]
    assert Image.open(tmp_path / "grid.png").size[0] > 16


def test_the_whole_two_level_flow_from_the_command_lines(tmp_path):
    """train_tokenizer --architecture vqvae2 → tokenize_dataset → train_prior --level top and --level bottom →
    sample.py, as a user runs them."""
    folder = write_images(tmp_path / "images", 6, classes=NAMES)
    tok, codes = tmp_path / "tokenizer", tmp_path / "codes"
    run_script("train_tokenizer.py", "--architecture", "vqvae2", "--dataset", folder, "--resolution", "16",
               "--channels", "8", "--z_channels", "8", "--codebook_size", "16", "--code_dim", "4",
               "--top_codebook_size", "8", "--top_code_dim", "3", "--perceptual_loss", "none", "--gan_weight", "0",
               "--max_steps", "2", "--batch_size", "4", "--num_workers", "0", "--no_progress", "--output_dir", tok)
    run_script("tokenize_dataset.py", "--tokenizer", tok, "--dataset", folder, "--output_dir", codes,
               "--num_workers", "0", "--no_progress")
    shared = ("--codes", codes, "--size", "tiny", "--max_steps", "2", "--batch_size", "4", "--no_progress")
    # Both priors at once: each process spends seconds importing.
    top = start_script("train_prior.py", *shared, "--level", "top", "--output_dir", tmp_path / "top")
    run_script("train_prior.py", *shared, "--level", "bottom", "--prior", "pixelcnn", "--tokenizer", tok,
               "--output_dir", tmp_path / "bottom")
    _, stderr = top.communicate(timeout=300)
    assert top.returncode == 0, stderr[-4000:]
    assert (tmp_path / "bottom" / "samples").is_dir()  # the bottom prior decoded sample grids through the tokenizer
    run_script("sample.py", "--tokenizer", tok, "--prior", tmp_path / "top", "--bottom_prior", tmp_path / "bottom",
               "--num_images", "4", "--class_label", "circle", "--out", tmp_path / "grid.png", "--out_dir",
               tmp_path / "samples")
    assert len(list((tmp_path / "samples").glob("*.png"))) == 4
    assert Image.open(tmp_path / "samples" / "00000.png").size == (16, 16)
