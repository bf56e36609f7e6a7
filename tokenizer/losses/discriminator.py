"""N-layer PatchGAN discriminator (pix2pix / taming): one real/fake logit per overlapping patch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class DiscriminatorConfig:
    in_channels: int = field(default=3, metadata={"flag": "in_channels", "help": "image channels"})
    channels: int = field(default=64, metadata={"flag": "disc_channels", "help": "discriminator base width"})
    # stride-2 convs; the receptive field grows with it (70x70 patches at 3, 34x34 at 2: for 32 px images)
    num_layers: int = field(default=2, metadata={"flag": "disc_layers", "help": "discriminator stride-2 layers"})

    def __post_init__(self) -> None:
        if self.num_layers < 1 or self.channels < 1:
            raise ValueError(
                f"num_layers={self.num_layers}, channels={self.channels}: expected positive integers"
            )


def _init_weights(module: nn.Module) -> None:
    # DCGAN initialisation, as in taming's weights_init.
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class PatchDiscriminator(nn.Module):
    """Images (B, 3, H, W) → patch logits (B, 1, h', w')."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        ch = config.channels
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = ch
        for n in range(1, config.num_layers + 1):
            out = ch * min(2**n, 8)
            stride = 2 if n < config.num_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)
