"""GAN objectives on discriminator logits, registered by name in LOSSES (`train.loss`).

- minimax (Goodfellow et al. 2014): D maximises log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z))),
  the saturating form.
- nonsaturating (same paper, sec. 3): G maximises log D(G(z)) instead.
- hinge (Lim & Ye 2017; Miyato et al. 2018): D minimises relu(1 - D(x)) + relu(1 + D(G(z))); G minimises -D(G(z)).

One-sided label smoothing (Salimans et al. 2016) replaces the real target 1 by `real_label` in the two
cross-entropy objectives; fake targets stay 0. Feature matching (same paper) trains G to match the mean of an
intermediate discriminator layer on real data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from components.core.plugins import Registry


class Loss(NamedTuple):
    d: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (real logits, fake logits, real label) -> D's loss
    g: Callable[[torch.Tensor], torch.Tensor]  # fake logits -> G's adversarial loss (to minimise)


LOSSES: Registry[Loss] = Registry("loss")


def _cross_entropy_d(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float) -> torch.Tensor:
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def _hinge_d(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float) -> torch.Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def _nonsaturating_g(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def _minimax_g(fake_logits: torch.Tensor) -> torch.Tensor:
    # log(1 - sigmoid(l)) = -softplus(l); minimising it saturates when D confidently rejects samples.
    return -F.softplus(fake_logits).mean()


def _hinge_g(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


# The first one is the default.
LOSSES.add("nonsaturating", Loss(_cross_entropy_d, _nonsaturating_g))
LOSSES.add("minimax", Loss(_cross_entropy_d, _minimax_g))
LOSSES.add("hinge", Loss(_hinge_d, _hinge_g))


def d_loss(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
    """The discriminator's loss (to minimise). Raises KeyError for an unknown loss."""
    return LOSSES[name].d(real_logits, fake_logits, real_label)


def g_loss(name: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss (to minimise). Raises KeyError for an unknown loss."""
    return LOSSES[name].g(fake_logits)


def feature_matching(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """|| E f(x) - E f(G(z)) ||^2 over an intermediate discriminator layer; real features are a fixed target."""
    return (real_features.detach().mean(0) - fake_features.mean(0)).pow(2).sum()
