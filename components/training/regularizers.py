"""Discriminator regularizers for little data, registered by name in REGULARIZERS (`train.regularizers`, a map
from name to weight; an empty map turns them all off).

- `r1` (Mescheder et al. 2018; StyleGAN2-ADA): weight/2 * E||grad_x D(x)||^2 on the real images D sees (augmented
  when `train.augment` is on), which keeps D smooth around the data. The weight is the paper's gamma.
- `lecam` (Tseng et al. 2021): weight * (E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2]), where a_real
  and a_fake are exponential moving averages (decay LECAM_DECAY) of D's mean logits on real and generated images,
  kept in the training state and its checkpoints. It bounds how far D's predictions drift apart when it overfits.

Each returns its term of D's loss from what one D step computed (`DStep`); none reads the host, so the step stays
capturable as one CUDA graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from components.core.plugins import Registry

LECAM_DECAY = 0.99  # Tseng et al.'s EMA decay


@dataclass
class DStep:
    """What one discriminator step computed, for the regularizers."""

    real_in: torch.Tensor  # the real images as D saw them (requires grad when a regularizer asks for it)
    real_logits: torch.Tensor
    fake_logits: torch.Tensor
    averages: torch.Tensor  # (2,) on the device: LeCam's a_real, a_fake; updated in place


class Regularizer(NamedTuple):
    needs_real_grad: bool  # D's input gradient on the real images is taken
    d_term: Callable[[DStep, float], torch.Tensor]  # (the step, weight) -> the term added to D's loss


REGULARIZERS: Registry[Regularizer] = Registry("regularizer")


def _r1(step: DStep, weight: float) -> torch.Tensor:
    (grad,) = torch.autograd.grad(step.real_logits.float().sum(), step.real_in, create_graph=True)
    return weight / 2 * grad.float().pow(2).flatten(1).sum(1).mean()


def _lecam(step: DStep, weight: float) -> torch.Tensor:
    real, fake = step.real_logits.float(), step.fake_logits.float()
    with torch.no_grad():
        step.averages.lerp_(torch.stack([real.mean(), fake.mean()]), 1 - LECAM_DECAY)
    a_real, a_fake = step.averages[0], step.averages[1]
    return weight * (F.relu(real - a_fake).pow(2).mean() + F.relu(a_real - fake).pow(2).mean())


REGULARIZERS.add("r1", Regularizer(True, _r1))
REGULARIZERS.add("lecam", Regularizer(False, _lecam))


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """The weights, when every name is registered and no weight is negative (else a ValueError naming it)."""
    for name, weight in weights.items():
        REGULARIZERS[name]
        if weight < 0:
            raise ValueError(f"regularizer {name!r} has a negative weight {weight}")
    return weights


def needs_real_grad(weights: dict[str, float]) -> bool:
    return any(REGULARIZERS[name].needs_real_grad for name, weight in weights.items() if weight > 0)


def d_terms(step: DStep, weights: dict[str, float]) -> torch.Tensor | None:
    """The sum of the enabled regularizers' terms, or None when none is on."""
    terms = [REGULARIZERS[name].d_term(step, weight) for name, weight in sorted(weights.items()) if weight > 0]
    return torch.stack(terms).sum() if terms else None
