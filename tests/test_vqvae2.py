"""The two-level VQ-VAE-2 tokenizer: grids per level, gradients through both quantisers, both levels decoded,
files and loading by architecture, and two training steps through the one training command."""

import json

import pytest
import torch

from pipelines.cli import config_parser, parse_config
from pipelines.training import train_tokenizer
from tests.conftest import tiny_vqgan, tiny_vqvae2_config
from tests.test_training import image_folder, tiny_train_config  # noqa: F401 (fixture)
from tokenizer import VQGAN, VQVAE2, build_tokenizer, load_tokenizer
from tokenizer.losses import LossConfig
from tokenizer.models.quantizer import QuantizerConfig
from tokenizer.training import TokenizerModelSettings, TrainTokenizerConfig


def tiny_vqvae2(seed: int = 0, **overrides) -> VQVAE2:
    torch.manual_seed(seed)
    return VQVAE2(tiny_vqvae2_config(**overrides)).eval()


def images(count: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("top_factor", [2, 4])
def test_encode_gives_a_top_and_a_bottom_grid_and_decode_takes_them(top_factor):
    model = tiny_vqvae2(resolution=32, top_factor=top_factor)
    top, bottom = model.encode(images(size=32))
    assert top.shape == (2, 8 // top_factor, 8 // top_factor) and bottom.shape == (2, 8, 8)
    assert top.dtype == bottom.dtype == torch.long
    assert model.config.grid_shapes == [(8 // top_factor,) * 2, (8, 8)]
    assert model.config.codebook_sizes == [16, 32]
    assert model.decode((top, bottom)).shape == (2, 3, 32, 32)
    assert [g.shape for g in model.encode_levels(images(size=32))] == [top.shape, bottom.shape]
    out = model(images(size=32))
    assert torch.equal(out.indices[0], top) and torch.equal(out.indices[1], bottom)
    assert torch.allclose(model.decode_levels([top, bottom]), out.reconstruction, atol=1e-4)  # straight-through rounding


def test_gradients_reach_both_encoders_through_both_quantizers():
    model = tiny_vqvae2().train()
    out = model(images())
    (out.reconstruction.pow(2).mean() + out.latent_loss).backward()
    for module in (model.bottom_encoder.conv_in, model.top_encoder.conv_in, model.top_decoder.conv_out,
                   model.top_quant_conv, model.bottom_quant_conv, model.top_upsample[0], model.decoder.conv_out):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0, module
    assert out.latent_loss.item() == pytest.approx(out.quantizers[0].loss.item() + out.quantizers[1].loss.item())


def test_decoding_reads_every_top_code_and_the_bottom_codes():
    model = tiny_vqvae2()
    top, bottom = model.encode(images())
    base = model.decode((top, bottom))
    for cell in [(0, 0), (1, 1)]:
        changed = top.clone()
        changed[0][cell] = (changed[0][cell] + 1) % 16
        diff = (model.decode((changed, bottom)) - base).abs()[0].sum(0)  # (16, 16)
        assert diff.max() > 0
    changed = bottom.clone()
    changed[0, 3, 3] = (changed[0, 3, 3] + 1) % 32
    assert (model.decode((top, changed)) - base).abs().max() > 0


def test_the_bottom_codes_are_chosen_knowing_the_top_ones():
    """The bottom quantiser sees the decoded top codes: other top codebooks give other bottom codes."""
    model = tiny_vqvae2()
    top, bottom = model.encode(images(count=4))
    with torch.no_grad():
        model.top_quantizer.codebook.mul_(-3.0)
    assert not torch.equal(model.encode(images(count=4))[1], bottom)


def test_bad_grids_are_value_errors():
    model = tiny_vqvae2()
    top, bottom = model.encode(images())
    with pytest.raises(ValueError, match="expected \\(top, bottom\\)"):
        model.decode(bottom)
    with pytest.raises(ValueError, match="coarser"):
        model.decode((bottom % 16, bottom))
    with pytest.raises(ValueError, match="top indices span"):
        model.decode((top + 16, bottom))
    with pytest.raises(ValueError, match="divisible by the downsample factor 8"):
        model.encode(images(size=12))


def test_config_checks_and_the_one_level_fields():
    with pytest.raises(ValueError, match="architecture='vqvae3'"):
        TokenizerModelSettings(architecture="vqvae3")
    with pytest.raises(ValueError, match="top_downsample_factor=3"):
        tiny_vqvae2_config(top_factor=3)
    with pytest.raises(ValueError, match="not divisible by the downsample factor 16"):
        tiny_vqvae2_config(resolution=24, top_factor=4)
    with pytest.raises(ValueError, match="codebook_sizes"):
        tiny_vqvae2_config().codebook_size
    with pytest.raises(ValueError, match="VQGAN is built from a VQGANConfig"):
        VQGAN(tiny_vqvae2_config())
    assert isinstance(build_tokenizer(tiny_vqvae2_config()), VQVAE2)
    # A one-level config's fingerprint reads only the fields it had before the hierarchical ones existed.
    assert "top_quantizer" not in tiny_vqgan().config.fingerprint_dict()


def test_save_load_round_trip_and_loading_by_architecture(tmp_path):
    model = tiny_vqvae2()
    model.save_pretrained(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "config.json").read_text())["architecture"] == "vqvae2"
    for loaded in (VQVAE2.from_pretrained(tmp_path / "two"), load_tokenizer(tmp_path / "two")):
        assert isinstance(loaded, VQVAE2) and loaded.config == model.config
        assert loaded.fingerprint() == model.fingerprint()
        for a, b in zip(loaded.encode(images()), model.encode(images())):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="holds a 'vqvae2' tokenizer"):
        VQGAN.from_pretrained(tmp_path / "two")
    # A one-level folder written before `architecture` existed still loads as a VQ-GAN.
    tiny_vqgan().save_pretrained(tmp_path / "one")
    config = json.loads((tmp_path / "one" / "config.json").read_text())
    assert "top_quantizer" not in config  # a one-level config holds no top-level fields
    config.pop("architecture")
    (tmp_path / "one" / "config.json").write_text(json.dumps(config))
    assert isinstance(load_tokenizer(tmp_path / "one"), VQGAN)
    assert load_tokenizer(tmp_path / "one").fingerprint() == tiny_vqgan().fingerprint()


def test_window_stats_report_each_level():
    model = tiny_vqvae2().train()
    model(images(count=4))
    stats = model.window_stats()
    assert {"top_codebook_usage", "top_perplexity", "bottom_codebook_usage", "bottom_perplexity"} <= stats.keys()
    assert stats["codebook_usage"] == min(stats["top_codebook_usage"], stats["bottom_codebook_usage"])


def test_flags_set_the_architecture_and_the_top_codebook():
    parser = config_parser(TrainTokenizerConfig)
    config, _ = parse_config(TrainTokenizerConfig, parser, [
        "--output_dir", "x", "--dataset", "emoji", "--architecture", "vqvae2", "--top_codebook_size", "64",
        "--codebook_size", "128", "--no_top_ema_codebook", "--top_downsample_factor", "4"])
    assert config.model.architecture == "vqvae2" and config.model.top_downsample_factor == 4
    assert config.model.top_quantizer.codebook_size == 64 and not config.model.top_quantizer.use_ema
    assert config.model.quantizer.codebook_size == 128 and config.model.quantizer.use_ema


def test_two_training_steps_with_the_gan(image_folder, tmp_path):  # noqa: F811 (fixture)
    out = tmp_path / "run"
    base = tiny_train_config(image_folder, out)
    model = tiny_vqvae2_config(top_quantizer=QuantizerConfig(codebook_size=8, code_dim=4, dead_code_threshold=0.5))
    train_tokenizer(tiny_train_config(image_folder, out, model=model, max_steps=2,
                                      loss=LossConfig(perceptual_loss="none", disc_start_step=0)))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"top_codebook_usage", "bottom_perplexity", "gan_loss", "adaptive_weight"} <= lines[-1].keys()
    trained = load_tokenizer(out)
    assert isinstance(trained, VQVAE2) and base.model.architecture == "vqgan"
    assert [g.shape for g in trained.encode_levels(images())] == [(2, 2, 2), (2, 4, 4)]


def test_tokenizer_evaluation_reports_each_level(tmp_path):
    from pipelines.evaluation import evaluate_tokenizer
    from tests.conftest import write_images
    from tokenizer.data import ImageDataConfig

    data = ImageDataConfig(dataset=str(write_images(tmp_path / "images", 6)), resolution=16)
    metrics = evaluate_tokenizer(tiny_vqvae2(), data, rfid=False, progress=False)
    assert metrics["num_images"] == 6 and metrics["psnr"] > 0 and 0 <= metrics["lpips"]
    assert 0 < metrics["top_codebook_usage"] <= 1 and 1 <= metrics["bottom_perplexity"] <= 32
    assert metrics["codebook_usage"] == min(metrics["top_codebook_usage"], metrics["bottom_codebook_usage"])


def test_two_level_codes_are_written_per_level_and_read_one_level_at_a_time(tmp_path):
    from pipelines import TokenizeDatasetConfig, tokenize_dataset
    from prior import CodesDataset
    from tests.conftest import write_images
    from tokenizer.data import ImageDataConfig, build_image_dataset

    folder = write_images(tmp_path / "images", 4, classes=("a", "b"))
    model = tiny_vqvae2()
    model.save_pretrained(tmp_path / "tokenizer")
    manifest = tokenize_dataset(tmp_path / "tokenizer", TokenizeDatasetConfig(
        dataset=str(folder), output_dir=str(tmp_path / "codes"), batch_size=3, shard_size=5, num_workers=0,
        flip=True, progress=False))
    assert manifest["codebook_sizes"] == [16, 32] and manifest["grid_shapes"] == [[2, 2], [4, 4]]
    assert "codebook_size" not in manifest
    dataset = build_image_dataset(ImageDataConfig(dataset=str(folder), resolution=16))
    originals = torch.stack([dataset[i]["image"] for i in range(len(dataset))])  # (8, 3, 16, 16)
    top, bottom = model.encode(originals)
    flipped_top, flipped_bottom = model.encode(originals.flip(-1))

    tops = CodesDataset(tmp_path / "codes", level="top", include_flipped=True, tokenizer=model)
    assert (tops.codebook_size, tops.grid_shape, tops.has_context, len(tops)) == (16, (2, 2), False, 16)
    assert torch.equal(torch.stack([tops[i][0] for i in range(8)]), top)
    assert torch.equal(torch.stack([tops[8 + i][0] for i in range(8)]), flipped_top)
    bottoms = CodesDataset(tmp_path / "codes", level="bottom", include_flipped=True)
    assert (bottoms.codebook_size, bottoms.grid_shape, bottoms.context_grid_shape) == (32, (4, 4), (2, 2))
    codes, label, context = bottoms[9]  # a mirrored image: its bottom grid with its own (mirrored) top grid
    assert torch.equal(codes, flipped_bottom[1]) and torch.equal(context, flipped_top[1]) and label == tops[9][1]
    assert torch.equal(torch.stack([bottoms[i][2] for i in range(8)]), top)
    bottoms.verify()
    with pytest.raises(ValueError, match="expected level='top' or 'bottom'"):
        CodesDataset(tmp_path / "codes")
