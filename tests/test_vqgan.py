import functools
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import tiny_vqgan_config
from tokenizer import VQGAN, AutoencoderConfig, VQGANConfig
from tokenizer.losses.discriminator import DiscriminatorConfig, PatchDiscriminator
from tokenizer.losses import LossConfig, VQGANLoss, adaptive_gan_weight
from tokenizer.models.quantizer import QuantizerConfig

tiny_config = functools.partial(tiny_vqgan_config, use_attention=True)  # (factor, resolution, **quantizer)


@pytest.mark.parametrize("factor", [2, 4, 8, 16])
def test_encode_decode_shapes(factor):
    torch.manual_seed(0)
    model = VQGAN(tiny_config(factor, resolution=32)).eval()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    indices = model.encode(images)
    assert indices.shape == (2, 32 // factor, 32 // factor) and indices.dtype == torch.long
    assert model.config.grid_shapes == [(32 // factor, 32 // factor)]
    assert model.decode(indices).shape == (2, 3, 32, 32)
    out = model(images)
    assert out.reconstruction.shape == images.shape
    assert torch.equal(out.indices, indices)


def test_decode_of_encode_equals_forward_reconstruction():
    torch.manual_seed(0)
    model = VQGAN(tiny_config()).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(model.decode(model.encode(images)), model(images).reconstruction, atol=1e-5)


def test_gradients_reach_encoder_through_quantizer():
    torch.manual_seed(0)
    model = VQGAN(tiny_config()).train()
    out = model(torch.rand(2, 3, 16, 16) * 2 - 1)
    (out.reconstruction.pow(2).mean() + out.quantizer.loss).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.decoder.conv_out.weight.grad.abs().sum() > 0


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VQGAN(tiny_config(use_ema=True, l2_normalize=True)).eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["quantizer"]["l2_normalize"] is True
    loaded = VQGAN.from_pretrained(tmp_path)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    assert loaded.config == model.config
    assert torch.equal(loaded.encode(images), model.encode(images))
    assert torch.equal(loaded.decode(model.encode(images)), model.decode(model.encode(images)))


def test_load_missing_weights_is_value_error(tmp_path):
    VQGAN(tiny_config()).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors is missing"):
        VQGAN.from_pretrained(tmp_path)


def test_load_mismatched_weights_is_value_error(tmp_path):
    VQGAN(tiny_config()).save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("decoder.conv_out.bias")
    state["quant_conv.weight"] = torch.zeros(5, 8, 1, 1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"decoder\.conv_out\.bias.*quant_conv\.weight"):
        VQGAN.from_pretrained(tmp_path)


def test_load_weights_from_other_config_is_value_error(tmp_path):
    VQGAN(tiny_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantizer"]["codebook_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="quantizer.codebook"):
        VQGAN.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: AutoencoderConfig(resolution=30, channel_mult=(1, 2, 2)), "resolution=30"),
        (lambda: AutoencoderConfig(channel_mult=(1, 2)), r"channel_mult=\[1, 2\] has 2 entries; downsample factor 4 needs 3"),
        (lambda: AutoencoderConfig(downsample_factor=32), "downsample_factor=32"),
        (lambda: QuantizerConfig(codebook_size=1), "codebook_size=1"),
        (lambda: LossConfig(reconstruction_loss="l3"), "reconstruction_loss='l3'"),
        (lambda: LossConfig(gan_loss="wasserstein"), "gan_loss='wasserstein'"),
        (lambda: LossConfig(perceptual_loss="vgg19"), "perceptual_loss='vgg19'"),
        (lambda: VQGANConfig.from_dict({"resolution": 32, "colour": 1}), "colour"),
        # The start left unset is a share of the run: only TrainTokenizerConfig knows max_steps.
        (lambda: VQGANLoss(LossConfig(perceptual_loss="none")), "disc_start_step=None"),
    ],
)
def test_invalid_configs_raise_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    "images, match",
    [
        (torch.zeros(2, 1, 16, 16), r"\(2, 1, 16, 16\)"),
        (torch.zeros(3, 16, 16), r"\(3, 16, 16\)"),
        (torch.zeros(1, 3, 18, 16), "divisible"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "dtype"),
    ],
)
def test_wrong_image_shapes_raise_value_error(images, match):
    model = VQGAN(tiny_config())
    with pytest.raises(ValueError, match=match):
        model.encode(images)


def test_out_of_range_indices_raise_value_error():
    model = VQGAN(tiny_config())
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        model.decode(torch.full((1, 4, 4), 32))
    with pytest.raises(ValueError, match="shape"):
        model.decode(torch.zeros(4, 4, dtype=torch.long))


def test_adaptive_weight_is_ratio_of_gradient_norms_at_last_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 3)
    x = torch.randn(5, 3)
    y = layer(x)
    rec, gan = y.pow(2).mean(), -y.sum()
    g_rec = torch.autograd.grad(rec, layer.weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, layer.weight, retain_graph=True)[0]
    expected = g_rec.norm() / (g_gan.norm() + 1e-4)
    assert torch.allclose(adaptive_gan_weight(rec, gan, layer.weight, 1e-4, 1e4), expected)
    assert adaptive_gan_weight(rec, gan, layer.weight, 1e-4, 0.01).item() == pytest.approx(0.01)  # clamped


def test_generator_loss_puts_no_gradient_into_discriminator_when_frozen():
    torch.manual_seed(0)
    model = VQGAN(tiny_config()).train()
    disc = PatchDiscriminator(DiscriminatorConfig(channels=8, num_layers=2))
    loss_fn = VQGANLoss(LossConfig(perceptual_loss="none", disc_start_step=0))
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    out = model(images)
    for p in disc.parameters():
        p.requires_grad_(False)
    loss, logs = loss_fn.generator_loss(images, out.reconstruction, out.quantizer.loss, disc, model.last_layer, step=0)
    loss.backward()
    assert "adaptive_weight" in logs and logs["adaptive_weight"] > 0
    assert all(p.grad is None for p in disc.parameters())
    assert model.decoder.conv_out.weight.grad is not None


def test_gan_terms_wait_for_disc_start_step():
    model = VQGAN(tiny_config()).train()
    disc = PatchDiscriminator(DiscriminatorConfig(channels=8, num_layers=2))
    loss_fn = VQGANLoss(LossConfig(perceptual_loss="none", disc_start_step=10))
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    out = model(images)
    _, logs = loss_fn.generator_loss(images, out.reconstruction, out.quantizer.loss, disc, model.last_layer, step=9)
    assert "gan_loss" not in logs


def test_gan_ramp_scales_only_the_generators_gan_term_and_reaches_full_weight():
    torch.manual_seed(0)
    model = VQGAN(tiny_config()).train()
    disc = PatchDiscriminator(DiscriminatorConfig(channels=8, num_layers=2))
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    out = model(images)
    at_once = VQGANLoss(LossConfig(perceptual_loss="none", disc_start_step=10, gan_ramp_steps=0))
    ramped = VQGANLoss(LossConfig(perceptual_loss="none", disc_start_step=10, gan_ramp_steps=4))

    def gan_part(loss_fn, step):
        loss, logs = loss_fn.generator_loss(images, out.reconstruction, out.quantizer.loss, disc, model.last_layer, step)
        rec, _ = loss_fn.reconstruction(images, out.reconstruction)
        return float((loss - rec - out.quantizer.loss).detach()), logs

    full, _ = gan_part(at_once, 10)
    assert abs(full) > 1e-6
    for step, factor in [(10, 0.25), (11, 0.5), (13, 1.0), (50, 1.0)]:
        part, logs = gan_part(ramped, step)
        assert part == pytest.approx(factor * full, rel=1e-4, abs=1e-7) and logs["gan_ramp"] == factor
    # The discriminator's own loss is not ramped.
    assert at_once.discriminator_loss(images, out.reconstruction, disc)[0] == ramped.discriminator_loss(images, out.reconstruction, disc)[0]


@pytest.mark.parametrize("kind", ["hinge", "non-saturating"])
def test_discriminator_loss_decreases_when_it_separates(kind):
    loss_fn = VQGANLoss(LossConfig(perceptual_loss="none", gan_loss=kind, disc_start_step=0))
    real, fake = torch.ones(2, 3, 8, 8), -torch.ones(2, 3, 8, 8)
    good = lambda x: x.mean(dim=(1, 2, 3), keepdim=True) * 5  # noqa: E731  (says real for real, fake for fake)
    bad = lambda x: -good(x)  # noqa: E731
    assert loss_fn.discriminator_loss(real, fake, good)[0] < loss_fn.discriminator_loss(real, fake, bad)[0]


def test_patch_discriminator_output_is_a_grid_of_logits():
    disc = PatchDiscriminator(DiscriminatorConfig(channels=8, num_layers=3))
    assert disc(torch.randn(2, 3, 32, 32)).shape == (2, 1, 2, 2)


def test_fingerprint_survives_save_load_and_changes_with_weights(tmp_path):
    model = VQGAN(tiny_config())
    model.save_pretrained(tmp_path)
    assert VQGAN.from_pretrained(tmp_path).fingerprint() == model.fingerprint()
    with torch.no_grad():
        model.decoder.conv_out.bias[0] += 1e-3
    assert VQGAN.from_pretrained(tmp_path).fingerprint() != model.fingerprint()
