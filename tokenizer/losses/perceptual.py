"""Perceptual distances for the reconstruction loss: LPIPS and shift-tolerant LPIPS (ST-LPIPS).

LPIPS (Zhang et al. 2018) compares unit-normalised trunk features at five depths through learned 1x1
heads. ST-LPIPS (Ghildyal & Liu, ECCV 2022, "vST0.0") uses anti-aliased trunks (stride-1 pooling and
convs followed by a binomial blur-pool, reflection padded) so that a one-pixel shift costs little; a
tokenizer whose reconstructions are off by a pixel is then not punished as if it had lost the content.

Weights: ST-LPIPS ships complete in the `stlpips-pytorch` wheel (found on disk, never imported: its
modules import IPython and torchsummary). Standard LPIPS needs the `lpips` package's heads (in its wheel)
plus torchvision's ImageNet VGG16, which torchvision downloads on first use: offline it may not load.
Networks are always built with a state dict and loaded strictly: no random weights can slip through.
"""

from __future__ import annotations

import importlib.util
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tessera_hub import load_state_dict_strict

PERCEPTUAL_LOSSES = ("stlpips-vgg", "stlpips-alex", "lpips", "none")

# Trunks the `LPIPS` module can build: "vgg" is torchvision's VGG16 layout (standard LPIPS), the other two
# the anti-aliased ST-LPIPS layouts.
TRUNKS = ("vgg", "stlpips-vgg", "stlpips-alex")

# LPIPS v0.1 input normalisation: (x - shift) / scale maps [-1, 1] images to the ImageNet statistics the
# trunks were trained on. The ST-LPIPS files carry the same numbers as buffers.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)

_STLPIPS_FILES = {"stlpips-vgg": "vgg_shift_tolerant.pth", "stlpips-alex": "alex_shift_tolerant.pth"}
_STLPIPS_PIP = "stlpips-pytorch==0.0.2"

# Smallest input side fed to a trunk; smaller images are upsampled bilinearly first. Why: every blur-pool
# reflection-pads by 2, which needs at least 3 pixels at its input: ST-VGG (four pooling stages) fails
# below 18 px, ST-AlexNet (11x11 first conv, three blur-pools) below 21 px. 32 keeps a margin, leaves
# 32x32 data (CIFAR-like) untouched and lifts 28x28 (MNIST-like) images a little.
MIN_SIDE = 32

# VGG16 "D" configuration ("M" = pooling stage) and the convs after whose ReLU LPIPS taps features:
# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (the 5th pooling stage is never reached).
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_VGG16_TAPS = (2, 4, 7, 10, 13)
_CHANNELS = {"vgg": (64, 128, 256, 512, 512), "stlpips-vgg": (64, 128, 256, 512, 512),
             "stlpips-alex": (64, 192, 384, 256, 256)}


class BlurPool2d(nn.Module):
    """Anti-aliased stride-2 downsampling: reflection pad 2, depthwise binomial [1,2,1]x[1,2,1]/16 filter.

    Padding by filter_size - 1 = 2 on each side (the ST-LPIPS 'pad_more' variant, more than the usual 1)
    gives an output of H // 2 + 1 rows.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16.0  # (3, 3), sums to 1
        # Named `filt` and persistent so that the shipped state dicts (which hold it) load strictly.
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(x, self.filt, stride=2, groups=x.shape[1])  # (B, C, H//2+1, W//2+1)


def _vgg16_slices(anti_aliased: bool) -> list[OrderedDict[str, nn.Module]]:
    """VGG16 feature layers cut after each LPIPS tap; names are the layers' indices in `features`."""
    slices: list[OrderedDict[str, nn.Module]] = []
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    index, channels, n_conv = 0, 3, 0

    def add(module: nn.Module) -> None:
        nonlocal index
        layers[str(index)] = module
        index += 1

    for v in _VGG16_CFG:
        if v == "M" and anti_aliased:  # max over 2x2 at stride 1, then blur and subsample
            add(nn.MaxPool2d(kernel_size=2, stride=1))
            add(BlurPool2d(channels))
        elif v == "M":
            add(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            add(nn.Conv2d(channels, int(v), kernel_size=3, padding=1))
            add(nn.ReLU(inplace=True))
            channels, n_conv = int(v), n_conv + 1
            if n_conv in _VGG16_TAPS:
                slices.append(layers)
                layers = OrderedDict()
    return slices


def _stlpips_alexnet_slices() -> list[OrderedDict[str, nn.Module]]:
    """Shift-tolerant AlexNet: stride-1 first conv and pools, each followed by a blur-pool.
    Names are the layers' indices in the original `features` (the state dicts use them)."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, kernel_size=11, padding=2), BlurPool2d(64), nn.ReLU(inplace=True),  # relu1
        nn.MaxPool2d(kernel_size=3, stride=1), BlurPool2d(64),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),  # relu2
        nn.MaxPool2d(kernel_size=3, stride=1), BlurPool2d(192),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),  # relu3
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),  # relu4
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),  # relu5
    ]
    ends = (3, 7, 11, 13, 15)  # slice k holds layers[ends[k-1]:ends[k]]
    return [OrderedDict((str(i), layers[i]) for i in range(start, end)) for start, end in zip((0,) + ends, ends)]


class _Trunk(nn.Module):
    """Five feature slices (`slice1`..`slice5`), each returning the features LPIPS compares."""

    def __init__(self, slices: list[OrderedDict[str, nn.Module]]) -> None:
        super().__init__()
        self.num_slices = len(slices)
        for k, layers in enumerate(slices, start=1):
            self.add_module(f"slice{k}", nn.Sequential(layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for k in range(1, self.num_slices + 1):
            x = getattr(self, f"slice{k}")(x)
            feats.append(x)
        return feats


def _unit_normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """f / (‖f‖_channels + eps), per pixel. (N, C, H, W) -> (N, C, H, W).

    The 1e-20 under the root keeps the gradient finite where a pixel's features are all zero (after ReLU
    that happens): sqrt'(0) is infinite and the original's 0 * inf gives NaN. Values are unchanged.
    """
    norm = torch.sqrt(f.pow(2).sum(dim=1, keepdim=True) + 1e-20)
    return f / (norm + eps)


def _rename_key(key: str) -> str:
    """Map the LPIPS / ST-LPIPS file layout onto this module's names (the Dropout before each head,
    always off at evaluation, is dropped, so `lin{k}.model.1` becomes `heads.{k}`)."""
    key = re.sub(r"^lin(\d+)\.model\.1\.weight$", r"heads.\1.weight", key)
    return {"scaling_layer.shift": "shift", "scaling_layer.scale": "scale"}.get(key, key)


class LPIPS(nn.Module):
    """Learned perceptual distance. `forward(x, y) -> (B,)` for images in [-1, 1] of shape (B, 3, H, W).

    Frozen and always in eval mode; gradients flow to the inputs. Built only from a complete state dict
    (file layout `net.sliceK.*`, `linK.model.1.weight`, `scaling_layer.*`), loaded strictly.
    """

    def __init__(self, trunk: str, state_dict: dict[str, torch.Tensor]) -> None:
        super().__init__()
        if trunk not in TRUNKS:
            raise ValueError(f"trunk={trunk!r}: expected one of {TRUNKS}")
        self.trunk = trunk
        slices = _stlpips_alexnet_slices() if trunk == "stlpips-alex" else _vgg16_slices(trunk != "vgg")
        self.net = _Trunk(slices)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _CHANNELS[trunk])
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        load_state_dict_strict(self, {_rename_key(k): v for k, v in state_dict.items()}, f"the {trunk} state dict")
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LPIPS:
        """Stay in eval mode whatever a parent module asks (no dropout, fixed behaviour)."""
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)}: expected the same shape")
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images of shape {tuple(x.shape)}: expected (B, 3, H, W) (or (B, 1, H, W))")
        feats_x = self._features(x)
        # The target usually needs no gradient: skipping its graph saves about half of the backward pass.
        with torch.set_grad_enabled(torch.is_grad_enabled() and y.requires_grad):
            feats_y = self._features(y)
        dist = x.new_zeros(x.shape[0])
        for fx, fy, head in zip(feats_x, feats_y, self.heads):
            diff = (fx - fy).pow(2)  # (B, C_k, H_k, W_k)
            dist = dist + head(diff).mean(dim=(1, 2, 3))  # spatial average of the 1-channel head output
        return dist  # (B,)

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised trunk features, (B, C_k, H_k, W_k) for each of the five taps."""
        h = images.expand(-1, 3, -1, -1)  # grey data sets: (B, 1, H, W) -> (B, 3, H, W)
        if min(h.shape[-2:]) < MIN_SIDE:
            factor = MIN_SIDE / min(h.shape[-2:])
            size = (round(h.shape[-2] * factor), round(h.shape[-1] * factor))
            h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        h = (h - self.shift) / self.scale
        return [_unit_normalize(f) for f in self.net(h)]


def _package_dir(name: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def stlpips_weights_path(name: str) -> Path:
    """Path of the shipped ST-LPIPS state dict for "stlpips-vgg" or "stlpips-alex" (may not exist)."""
    root = _package_dir("stlpips_pytorch")
    base = root if root is not None else Path("<stlpips_pytorch not installed>")
    return base / "weights" / "vST0.0" / _STLPIPS_FILES[name]


def load_stlpips(name: str) -> LPIPS:
    """ST-LPIPS with the weights shipped in the stlpips-pytorch wheel."""
    if name not in _STLPIPS_FILES:
        raise ValueError(f"name={name!r}: expected one of {tuple(_STLPIPS_FILES)}")
    path = stlpips_weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: weight file {path} not found; install it with `pip install {_STLPIPS_PIP}`, "
                                "or choose another perceptual loss (none trains without one)")
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    return LPIPS(name, state_dict)


def _lpips_heads_path() -> Path | None:
    root = _package_dir("lpips")
    return None if root is None else root / "weights" / "v0.1" / "vgg.pth"


def _torchvision_vgg16_cached() -> bool:
    """Whether torchvision's ImageNet VGG16 file is already in the torch hub cache (no download)."""
    from torchvision.models import VGG16_Weights

    filename = VGG16_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


def load_lpips() -> LPIPS:
    """Standard LPIPS-VGG: torchvision's ImageNet VGG16 (downloaded to the torch hub cache when missing)
    plus the `lpips` package's v0.1 heads. FileNotFoundError naming what is missing when either can't be had."""
    heads_path = _lpips_heads_path()
    if heads_path is None or not heads_path.is_file():
        raise FileNotFoundError("lpips: the linear heads (weights/v0.1/vgg.pth of the `lpips` package) were not "
                           "found; install them with `pip install lpips`")
    from torchvision.models import VGG16_Weights

    try:
        # Only the state dict: building torchvision's whole VGG16 would also allocate its 120M-param classifier.
        vgg = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as err:  # no network and nothing cached: urllib/HTTP/OS errors
        raise FileNotFoundError("lpips: torchvision's ImageNet VGG16 weights (VGG16_Weights.IMAGENET1K_V1) are not "
                           f"cached in {torch.hub.get_dir()} and could not be downloaded ({err!r})") from err
    heads = torch.load(heads_path, map_location="cpu", weights_only=True)
    return LPIPS("vgg", lpips_state_dict(vgg, heads))


def lpips_state_dict(vgg16: dict[str, torch.Tensor], heads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Assemble the file layout of a standard LPIPS-VGG from torchvision's VGG16 state dict
    (`features.{i}.*`; the classifier is ignored) and the lpips heads file (`lin{k}.model.1.weight`)."""
    slice_of: dict[str, str] = {}  # layer index in `features` -> "sliceK"
    for k, layers in enumerate(_vgg16_slices(anti_aliased=False), start=1):
        slice_of.update({index: f"slice{k}" for index in layers})
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in vgg16.items():
        match = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
        if match and match.group(1) in slice_of:
            state_dict[f"net.{slice_of[match.group(1)]}.{match.group(1)}.{match.group(2)}"] = value
    state_dict.update(heads)
    state_dict.setdefault("scaling_layer.shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
    state_dict.setdefault("scaling_layer.scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
    return state_dict


def _check_name(name: str) -> None:
    if name not in PERCEPTUAL_LOSSES:
        raise ValueError(f"perceptual loss {name!r}: expected one of {PERCEPTUAL_LOSSES}")


def is_available(name: str) -> bool:
    """Whether `build_perceptual_loss(name)` can load real weights here without a download ("none": always)."""
    _check_name(name)
    if name in _STLPIPS_FILES:
        return stlpips_weights_path(name).is_file()
    if name == "lpips":
        heads_path = _lpips_heads_path()
        return heads_path is not None and heads_path.is_file() and _torchvision_vgg16_cached()
    return True  # "none"


def build_perceptual_loss(name: str) -> nn.Module | None:
    """The perceptual distance module named `name` (see PERCEPTUAL_LOSSES), or None for "none".

    There is no fallback: a named loss whose weights are missing raises FileNotFoundError saying how to get them,
    so a run never trains without the loss its config records.
    """
    _check_name(name)
    if name == "none":
        return None
    if name in _STLPIPS_FILES:
        return load_stlpips(name)
    return load_lpips()
