"""Networks, registered by name in ARCHS (`train.arch`), all rebuilt from a GeneratorSpec stored with their weights.

- `mlp`: the fully-connected generator and discriminator of Goodfellow et al. 2014 (ReLU / LeakyReLU here
  instead of the paper's maxout).
- `dcgan` (Radford et al. 2015): transposed convolutions with batch norm and ReLU, tanh output; strided
  convolutions with LeakyReLU(0.2) in the discriminator; weights from N(0, 0.02); sized to the resolution.
- `cdcgan`: the class-conditional DCGAN: G reads z and a one-hot label, D reads the image and the label as
  constant planes (Mirza & Osindero 2014 applied to DCGAN).

The discriminator's options (`DOptions`, from `train`): minibatch discrimination (Salimans et al. 2016), an optional
layer before the output; spectral normalisation of every convolution and linear layer (Miyato et al. 2018), which
replaces D's batch norms; and for a conditional model the projection discriminator (Miyato & Koyama 2018): the
label enters as <embed(y), features> added to the logit instead of as constant input planes. D is never exported,
so these change training only; its weights live in checkpoints, rebuilt with the same options.
Every discriminator returns (logits, features); the features feed feature matching.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from components.core.plugins import Registry


@dataclass(frozen=True)
class GeneratorSpec:
    """What a generator is rebuilt from; stored as JSON with every checkpoint, weights file and export."""

    arch: str
    z_dim: int
    channels: int
    image_size: int
    base_channels: int
    extra_layers: int = 0
    num_classes: int = 0  # > 0: class-conditional

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels, self.image_size, self.image_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> GeneratorSpec:
        """From stored JSON; files written before a key existed get its default (arch dcgan, no extra layers)."""
        return cls(
            arch=raw.get("arch", "dcgan"),
            z_dim=int(raw["z_dim"]),
            channels=int(raw["channels"]),
            image_size=int(raw["image_size"]),
            base_channels=int(raw["base_channels"]),
            extra_layers=int(raw.get("extra_layers", 0)),
            num_classes=int(raw.get("num_classes", 0)),
        )


@dataclass(frozen=True)
class DOptions:
    """How the discriminator is built (train.minibatch_discrimination, spectral_norm, d_conditioning)."""

    minibatch: bool = False
    spectral_norm: bool = False
    projection: bool = False  # conditional models: the label by projection, not as input planes


class Arch(NamedTuple):
    generator: Callable[[GeneratorSpec], nn.Module]
    discriminator: Callable[[GeneratorSpec, DOptions], nn.Module]
    conditional: bool  # trains on the dataset's labels
    convolutional: bool  # channels_last applies


ARCHS: Registry[Arch] = Registry("architecture")


def _upsamplings(image_size: int) -> int:
    n = int(math.log2(image_size)) - 2
    if image_size < 8 or 2 ** (n + 2) != image_size:
        raise ValueError(f"DCGAN image size must be a power of two >= 8, got {image_size}")
    return n


def dcgan_init(module: nn.Module) -> None:
    """DCGAN weight init: conv, linear and embedding weights N(0, 0.02); batch-norm scale N(1, 0.02), shift 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):  # the projection discriminator's class embedding
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. 2016, sec. 3.2: each sample sees how close it is to the rest of the batch, which lets D
    spot a collapsed generator. Output: the input features concatenated with `kernels` closeness scores."""

    def __init__(self, in_features: int, kernels: int = 32, kernel_dim: int = 8):
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x @ self.T).view(-1, self.kernels, self.kernel_dim)
        l1 = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(3)  # (B, B, kernels)
        closeness = torch.exp(-l1).sum(1) - 1.0  # minus the sample's own exp(0)
        return torch.cat([x, closeness], 1)


def _one_hot(y: torch.Tensor | None, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    if y is None:
        raise ValueError("a conditional network needs labels y")
    return F.one_hot(y.long(), num_classes).to(like.dtype)


class _Head(nn.Module):
    """D's output from its features: optional minibatch discrimination, a linear logit, and with projection
    classes the projection term <embed(y), h> (Miyato & Koyama 2018). Its layers are attributes of the
    discriminator itself (`mbd`, `out`, `embed`), so checkpoints keep their keys."""

    mbd: MinibatchDiscrimination | None
    out: nn.Linear
    embed: nn.Embedding | None

    def _make_head(self, features: int, minibatch: bool, projection_classes: int) -> None:
        self.mbd = MinibatchDiscrimination(features) if minibatch else None
        width = features + (self.mbd.kernels if self.mbd else 0)
        self.out = nn.Linear(width, 1)
        self.embed = nn.Embedding(projection_classes, width) if projection_classes else None

    def _logits(self, features: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.mbd(features) if self.mbd is not None else features
        logits = self.out(h).flatten()
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional network needs labels y")
            logits = logits + (self.embed(y.long()).to(h.dtype) * h).sum(1)
        return logits


class Generator(nn.Module):
    """DCGAN generator: z (B, z_dim) [+ labels (B,)] -> images (B, channels, size, size) in [-1, 1].

    extra_layers > 0 adds 3x3 convolutions at the output resolution (the `n_extra_layers` of the DCGAN
    reference code); on 8x8 digits one extra layer in G and D takes fid_domain from ~64 to ~4.
    """

    def __init__(self, z_dim: int, channels: int, image_size: int, base_channels: int, extra_layers: int = 0, num_classes: int = 0):
        super().__init__()
        n = _upsamplings(image_size)
        self.z_dim, self.num_classes = z_dim, num_classes
        width = base_channels
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim + num_classes, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        if extra_layers == 0:
            layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        else:
            out = max(width // 2, 4)
            layers += [nn.ConvTranspose2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(True)]
            for _ in range(extra_layers - 1):
                layers += [nn.Conv2d(out, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(True)]
            layers += [nn.Conv2d(out, channels, 3, 1, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([z, _one_hot(y, self.num_classes, z)], 1)
        return self.net(z.view(z.shape[0], -1, 1, 1))


class Discriminator(_Head):
    """DCGAN discriminator: images [+ labels] -> (logits (B,), features (B, F)).

    extra_layers: 3x3 convolutions at full resolution first. The conv stack ends at 4x4; its flattened output
    is the feature layer, followed by optional minibatch discrimination and a linear output.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        base_channels: int,
        extra_layers: int = 0,
        num_classes: int = 0,
        minibatch_discrimination: bool = False,
        projection: bool = False,
    ):
        super().__init__()
        n = _upsamplings(image_size)
        self.num_classes = 0 if projection else num_classes  # label planes in the input
        width = max(base_channels // 2 ** (n - 1), 4)
        layers: list[nn.Module] = []
        in_ch = channels + self.num_classes
        for i in range(extra_layers):
            out = max(width // 2, 4)
            layers += [nn.Conv2d(in_ch, out, 3, 1, 1, bias=False)] + ([nn.BatchNorm2d(out)] if i else []) + [nn.LeakyReLU(0.2, True)]
            in_ch = out
        # The layer that sees raw pixels has no batch norm (DCGAN); after extra layers it does.
        layers += (
            [nn.Conv2d(in_ch, width, 4, 2, 1, bias=False)] + ([nn.BatchNorm2d(width)] if extra_layers else []) + [nn.LeakyReLU(0.2, True)]
        )
        for _ in range(n - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, True)]
            width *= 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self._make_head(width * 16, minibatch_discrimination, num_classes if projection else 0)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.num_classes:
            planes = _one_hot(y, self.num_classes, x)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
            x = torch.cat([x, planes], 1)
        features = self.body(x)
        return self._logits(features, y), features


class MLPGenerator(nn.Module):
    """Goodfellow et al. 2014: z -> 4*base -> 8*base -> pixels, tanh output."""

    def __init__(self, z_dim: int, channels: int, image_size: int, base_channels: int, num_classes: int = 0):
        super().__init__()
        self.z_dim, self.num_classes, self.shape = z_dim, num_classes, (channels, image_size, image_size)
        hidden = 4 * base_channels
        self.net = nn.Sequential(
            nn.Linear(z_dim + num_classes, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, 2 * hidden),
            nn.ReLU(True),
            nn.Linear(2 * hidden, channels * image_size * image_size),
            nn.Tanh(),
        )
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([z, _one_hot(y, self.num_classes, z)], 1)
        return self.net(z).view(-1, *self.shape)


class MLPDiscriminator(_Head):
    """Goodfellow et al. 2014: pixels -> 8*base -> 4*base (features) -> logit, LeakyReLU(0.2)."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        base_channels: int,
        num_classes: int = 0,
        minibatch_discrimination: bool = False,
        projection: bool = False,
    ):
        super().__init__()
        self.num_classes = 0 if projection else num_classes  # one-hot label in the input
        hidden = 4 * base_channels
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * image_size * image_size + self.num_classes, 2 * hidden),
            nn.LeakyReLU(0.2, True),
            nn.Linear(2 * hidden, hidden),
            nn.LeakyReLU(0.2, True),
        )
        self._make_head(hidden, minibatch_discrimination, num_classes if projection else 0)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        if self.num_classes:
            x = torch.cat([x, _one_hot(y, self.num_classes, x)], 1)
        features = self.body(x)
        return self._logits(features, y), features


def _dcgan_generator(spec: GeneratorSpec) -> nn.Module:
    return Generator(spec.z_dim, spec.channels, spec.image_size, spec.base_channels, spec.extra_layers, spec.num_classes)


def _dcgan_discriminator(spec: GeneratorSpec, options: DOptions) -> nn.Module:
    return Discriminator(
        spec.channels, spec.image_size, spec.base_channels, spec.extra_layers, spec.num_classes, options.minibatch, options.projection
    )


def _mlp_generator(spec: GeneratorSpec) -> nn.Module:
    return MLPGenerator(spec.z_dim, spec.channels, spec.image_size, spec.base_channels, spec.num_classes)


def _mlp_discriminator(spec: GeneratorSpec, options: DOptions) -> nn.Module:
    return MLPDiscriminator(spec.channels, spec.image_size, spec.base_channels, spec.num_classes, options.minibatch, options.projection)


# The first one is the default.
ARCHS.add("dcgan", Arch(_dcgan_generator, _dcgan_discriminator, conditional=False, convolutional=True))
ARCHS.add("mlp", Arch(_mlp_generator, _mlp_discriminator, conditional=False, convolutional=False))
ARCHS.add("cdcgan", Arch(_dcgan_generator, _dcgan_discriminator, conditional=True, convolutional=True))


def build_generator(spec: GeneratorSpec) -> nn.Module:
    """Rebuild a generator from its spec."""
    return ARCHS[spec.arch].generator(spec)


def spectrally_normalized(module: nn.Module) -> nn.Module:
    """Every convolution and linear layer under `module` spectrally normalised (one power iteration per forward
    pass in training mode), and its batch norms removed, as in SN-GAN's discriminator."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.Identity())
        elif isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            spectrally_normalized(child)
    return module


def build_discriminator(spec: GeneratorSpec, options: DOptions = DOptions()) -> nn.Module:
    d = ARCHS[spec.arch].discriminator(spec, options)
    return spectrally_normalized(d) if options.spectral_norm else d
