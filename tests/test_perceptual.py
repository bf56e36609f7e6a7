"""Perceptual distances: properties, frozen/eval behaviour, strict loading, and distances recorded from the
stlpips-pytorch package's own implementation (our networks matched it to 0.0 on random inputs)."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokenizer.losses import perceptual
from tokenizer.losses.perceptual import LPIPS, PERCEPTUAL_LOSSES, build_perceptual_loss, is_available

pytestmark = pytest.mark.skipif(not is_available("stlpips-vgg"), reason="stlpips-pytorch weights not installed")

# stlpips_pytorch.stlpips.LPIPS(net=..., variant="shift_tolerant")(x, y) on `_pair(size)`:
# [noisy copy, one-pixel shift]. Computed once with the package (0.0.2), not with this code.
REFERENCE = {
    ("stlpips-vgg", 64): [0.6170698404312134, 0.0594482421875],
    ("stlpips-vgg", 32): [0.25063055753707886, 0.0565023310482502],
    ("stlpips-alex", 64): [0.16304126381874084, 0.016412975266575813],
    ("stlpips-alex", 32): [0.033152587711811066, 0.01348557323217392],
}


def _pair(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two smooth images (2, 3, size, size) in [-1, 1] and their distortions: noise, a 1-px shift."""
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, size=size, mode="bilinear", align_corners=False)
    y = (x + 0.3 * (torch.rand(2, 3, size, size, generator=g) * 2 - 1)).clamp(-1, 1)
    y[1] = torch.roll(x[1], shifts=(1, 1), dims=(1, 2))
    return x, y


@pytest.fixture(scope="module")
def losses() -> dict[str, nn.Module]:
    return {name: build_perceptual_loss(name) for name in ("stlpips-vgg", "stlpips-alex")}


@pytest.mark.parametrize("name,size", sorted(REFERENCE))
def test_matches_reference_implementation(losses: dict[str, nn.Module], name: str, size: int) -> None:
    x, y = _pair(size)
    with torch.no_grad():
        d = losses[name](x, y)
    assert d.shape == (2,)
    torch.testing.assert_close(d, torch.tensor(REFERENCE[(name, size)]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["stlpips-vgg", "stlpips-alex"])
def test_identical_zero_blur_positive(losses: dict[str, nn.Module], name: str) -> None:
    x, _ = _pair(32)
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    with torch.no_grad():
        same, blur = losses[name](x, x), losses[name](x, blurred)
    assert same.abs().max() < 1e-6
    assert (blur > 1e-3).all()


@pytest.mark.parametrize("name", ["stlpips-vgg", "stlpips-alex"])
def test_gradients_reach_inputs_not_params(losses: dict[str, nn.Module], name: str) -> None:
    x, y = _pair(32)
    x = x.clone().requires_grad_(True)
    losses[name](x, y).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in losses[name].parameters())


def test_stays_frozen_and_in_eval_mode(losses: dict[str, nn.Module]) -> None:
    loss = losses["stlpips-alex"]
    parent = nn.ModuleDict({"perceptual": loss, "head": nn.Linear(2, 2)})
    parent.train()
    assert parent["head"].training
    assert not any(m.training for m in loss.modules())
    assert not any(p.requires_grad for p in loss.parameters())


@pytest.mark.parametrize("name", ["stlpips-vgg", "stlpips-alex"])
@pytest.mark.parametrize("size", [32, 28, 16])
def test_small_and_grey_images(losses: dict[str, nn.Module], name: str, size: int) -> None:
    x = torch.rand(3, 1, size, size) * 2 - 1
    with torch.no_grad():
        d_grey = losses[name](x, x.flip(-1))
        d_rgb = losses[name](x.expand(-1, 3, -1, -1), x.flip(-1).expand(-1, 3, -1, -1))
    assert d_grey.shape == (3,) and torch.isfinite(d_grey).all() and (d_grey > 0).all()
    torch.testing.assert_close(d_grey, d_rgb)


def test_min_side_is_needed_and_enough(losses: dict[str, nn.Module], monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the upsampling the ST-AlexNet trunk breaks on 16 px (reflection pad wider than its input).
    monkeypatch.setattr(perceptual, "MIN_SIDE", 0)
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(RuntimeError):
        losses["stlpips-alex"](x, x)


def test_shipped_constants_are_the_documented_ones(losses: dict[str, nn.Module]) -> None:
    binomial = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    for loss in losses.values():
        blurs = [m for m in loss.modules() if isinstance(m, perceptual.BlurPool2d)]
        assert blurs and all(torch.equal(b.filt, binomial.expand_as(b.filt)) for b in blurs)
        torch.testing.assert_close(loss.shift.flatten(), torch.tensor(perceptual.LPIPS_SHIFT))
        torch.testing.assert_close(loss.scale.flatten(), torch.tensor(perceptual.LPIPS_SCALE))


def test_strict_loading_names_bad_keys() -> None:
    state = torch.load(perceptual.stlpips_weights_path("stlpips-alex"), map_location="cpu", weights_only=True)
    missing = {k: v for k, v in state.items() if k != "lin4.model.1.weight"}
    with pytest.raises(ValueError, match="heads.4.weight"):
        LPIPS("stlpips-alex", missing)
    with pytest.raises(ValueError, match="net.slice9.0.weight"):
        LPIPS("stlpips-alex", {**state, "net.slice9.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        LPIPS("stlpips-alex", {**state, "lin0.model.1.weight": torch.zeros(1, 3, 1, 1)})


def test_standard_lpips_layout_is_torchvision_vgg16() -> None:
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["D"])  # torchvision's VGG16 `features`, random weights
    vgg = {f"features.{k}": v for k, v in features.state_dict().items()}
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 128, 256, 512, 512))}
    loss = LPIPS("vgg", perceptual.lpips_state_dict(vgg, heads))
    x = torch.rand(2, 3, 32, 32)
    taps = loss.net(x)
    # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 are after layers 3, 8, 15, 22, 29 of `features`
    for tap, end in zip(taps, (4, 9, 16, 23, 30)):
        torch.testing.assert_close(tap, features[:end](x))


def test_standard_lpips_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(perceptual, "_lpips_heads_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install lpips"):
        build_perceptual_loss("lpips")
    # heads present but torchvision's VGG16 neither cached nor downloadable
    heads = tmp_path / "vgg.pth"
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 128, 256, 512, 512))},
               heads)
    monkeypatch.setattr(perceptual, "_lpips_heads_path", lambda: heads)

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(FileNotFoundError, match="VGG16"):
        build_perceptual_loss("lpips")


def test_default_is_a_concrete_loss_and_missing_weights_fail(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from tokenizer.losses import LossConfig

    assert LossConfig().perceptual_loss == "stlpips-alex" and "auto" not in PERCEPTUAL_LOSSES
    assert is_available("stlpips-vgg") and is_available("stlpips-alex")
    assert build_perceptual_loss(LossConfig().perceptual_loss).trunk == "stlpips-alex"
    monkeypatch.setattr(perceptual, "stlpips_weights_path", lambda name: tmp_path / "absent.pth")
    assert not is_available("stlpips-vgg")
    with pytest.raises(FileNotFoundError, match="absent.pth.*pip install stlpips-pytorch"):
        build_perceptual_loss("stlpips-vgg")


def test_names() -> None:
    assert build_perceptual_loss("none") is None
    with pytest.raises(ValueError, match="'vgg19'.*stlpips-vgg"):
        build_perceptual_loss("vgg19")
    with pytest.raises(ValueError, match="'bogus'"):
        is_available("bogus")
    with pytest.raises(ValueError, match="trunk"):
        LPIPS("resnet", {})


def test_unit_normalize_gradient_finite_on_zero_features() -> None:
    f = torch.zeros(1, 4, 2, 2, requires_grad=True)
    perceptual._unit_normalize(f).sum().backward()
    assert torch.isfinite(f.grad).all()
