"""Networks: a DCGAN generator and discriminator sized to the image resolution, and the small classifier
whose hidden layer is the offline feature extractor for `fid_domain`.

DCGAN (Radford et al. 2015): transposed convolutions with batch norm and ReLU, tanh output; strided
convolutions with LeakyReLU(0.2) in the discriminator; weights drawn from N(0, 0.02).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _upsamplings(image_size: int) -> int:
    n = int(math.log2(image_size)) - 2
    if image_size < 8 or 2 ** (n + 2) != image_size:
        raise ValueError(f"DCGAN image size must be a power of two >= 8, got {image_size}")
    return n


def dcgan_init(module: nn.Module) -> None:
    """DCGAN weight init: conv weights N(0, 0.02); batch-norm scale N(1, 0.02), shift 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z (B, z_dim) -> images (B, channels, size, size) in [-1, 1].

    extra_layers > 0 adds 3x3 convolutions at the output resolution (the `n_extra_layers` of the DCGAN
    reference code); on 8x8 digits one extra layer in G and D takes fid_domain from ~64 to ~4.
    """

    def __init__(self, z_dim: int, channels: int, image_size: int, base_channels: int, extra_layers: int = 0):
        super().__init__()
        n = _upsamplings(image_size)
        width = base_channels
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, width, 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        if extra_layers == 0:
            layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        else:
            width_out = max(width // 2, 4)
            layers += [nn.ConvTranspose2d(width, width_out, 4, 2, 1, bias=False), nn.BatchNorm2d(width_out), nn.ReLU(True)]
            for _ in range(extra_layers - 1):
                layers += [nn.Conv2d(width_out, width_out, 3, 1, 1, bias=False), nn.BatchNorm2d(width_out), nn.ReLU(True)]
            layers += [nn.Conv2d(width_out, channels, 3, 1, 1, bias=False), nn.Tanh()]
        self.z_dim = z_dim
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    """images (B, channels, size, size) -> logits (B,). extra_layers: 3x3 convolutions at full resolution first."""

    def __init__(self, channels: int, image_size: int, base_channels: int, extra_layers: int = 0):
        super().__init__()
        n = _upsamplings(image_size)
        width = max(base_channels // 2 ** (n - 1), 4)
        layers: list[nn.Module] = []
        in_ch = channels
        for i in range(extra_layers):
            out = max(width // 2, 4)
            layers += [nn.Conv2d(in_ch, out, 3, 1, 1, bias=False)] + ([nn.BatchNorm2d(out)] if i else []) + [nn.LeakyReLU(0.2, True)]
            in_ch = out
        # The layer that sees raw pixels has no batch norm (DCGAN); after extra layers it does.
        layers += [nn.Conv2d(in_ch, width, 4, 2, 1, bias=False)] + ([nn.BatchNorm2d(width)] if extra_layers else []) + [nn.LeakyReLU(0.2, True)]
        for _ in range(n - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]  # 4x4 -> 1x1
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class FeatureClassifier(nn.Module):
    """A small CNN classifier trained on the dataset; its hidden layer gives `fid_domain` features."""

    feature_dim = 128

    def __init__(self, channels: int, image_size: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 1, 1), nn.ReLU(True),
            nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(True),
            nn.Flatten(),
            nn.Linear(64 * ((image_size + 1) // 2) ** 2, self.feature_dim), nn.ReLU(True),
        )
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build_generator(model_cfg: dict) -> Generator:
    """Rebuild a generator from the plain dict stored with its weights (see training.generator_spec)."""
    return Generator(model_cfg["z_dim"], model_cfg["channels"], model_cfg["image_size"], model_cfg["base_channels"],
                     model_cfg.get("extra_layers", 0))
