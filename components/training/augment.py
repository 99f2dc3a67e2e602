"""Differentiable augmentation (DiffAugment, Zhao et al. 2020), registered by name in AUGMENTS (`train.augment`).

D sees only augmented images, real and generated alike, in both the D and the G step, so it cannot memorise a
small training set, and G is still pulled towards the un-augmented distribution: every transformation here is
differentiable with respect to the image. The policy is a comma-separated list of names applied in order:

- `color`: brightness (+-0.5), saturation (x0-2, a no-op on one channel) and contrast (x0.5-1.5), as published;
- `translation`: a shift of up to 1/8 of the image side in each direction (1 pixel at 8x8, 4 at 32x32), the
  uncovered border zero-filled;
- `cutout`: one square of half the image side (4x4 at 8x8, 16x16 at 32x32) set to zero.
Flips are not offered: they change what a digit or a letter is.

The randomness is not drawn here: each image comes with a row of uniform numbers in [0, 1), drawn by the batch
draw from the run's generator (batches.py), so a step is a pure function of its inputs (bitwise resume, CUDA graph
capture) and a policy's numbers are `random_columns(policy)` wide.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from components.core.plugins import Registry

TRANSLATION_RATIO = 1 / 8  # of the image side, DiffAugment's default
CUTOUT_RATIO = 1 / 2


class Augmentation(NamedTuple):
    columns: int  # uniform numbers per image
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images (B, C, H, W), u (B, columns)) -> images


AUGMENTS: Registry[Augmentation] = Registry("augmentation")


def _per_image(u: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return u.to(like.dtype)[:, None, None, None]


def _color(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    x = x + (_per_image(u[:, 0], x) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_per_image(u[:, 1], x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_image(u[:, 2], x) + 0.5) + mean


def _shifted_index(u: torch.Tensor, size: int, pad: int) -> torch.Tensor:
    """(B, size) row or column indices into the image padded by `pad`, shifted by an integer in [-pad, pad]."""
    shift = torch.clamp((u * (2 * pad + 1)).long(), max=2 * pad) - pad
    return torch.arange(size, device=u.device)[None, :] + pad + shift[:, None]


def _translation(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    pad = max(int(h * TRANSLATION_RATIO + 0.5), 1)
    rows, cols = _shifted_index(u[:, 0], h, pad), _shifted_index(u[:, 1], w, pad)
    padded = F.pad(x, [pad, pad, pad, pad])
    batch = torch.arange(b, device=x.device)[:, None, None]
    # gathered as (B, H, W, C); permuted back, it is (B, C, H, W) laid out channels-last
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _box(u: torch.Tensor, size: int, hole: int) -> torch.Tensor:
    """(B, size) booleans: inside a hole of `hole` cells whose centre is uniform over the side (as published)."""
    centre = torch.clamp((u * (size + 1 - hole % 2)).long(), max=size - hole % 2)
    first = centre - hole // 2
    index = torch.arange(size, device=u.device)[None, :]
    return (index >= first[:, None]) & (index < first[:, None] + hole)


def _cutout(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    _, _, h, w = x.shape
    hole_h, hole_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    inside = _box(u[:, 0], h, hole_h)[:, :, None] & _box(u[:, 1], w, hole_w)[:, None, :]
    return x * (~inside).to(x.dtype)[:, None, :, :]


AUGMENTS.add("color", Augmentation(3, _color))
AUGMENTS.add("translation", Augmentation(2, _translation))
AUGMENTS.add("cutout", Augmentation(2, _cutout))


@functools.cache
def policy_names(policy: str) -> tuple[str, ...]:
    """'translation, cutout' -> ('translation', 'cutout'); an unknown name raises UnknownPart naming the choices.
    Cached: every training step applies the policy."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    for name in names:
        AUGMENTS[name]
    return names


def check_policy(policy: str) -> str:
    """The policy, when every name in it is registered (else UnknownPart naming the choices)."""
    policy_names(policy)
    return policy


def random_columns(policy: str) -> int:
    """Uniform numbers one image needs under this policy."""
    return sum(AUGMENTS[name].columns for name in policy_names(policy))


def augment(x: torch.Tensor, u: torch.Tensor, policy: str) -> torch.Tensor:
    """x augmented by each transformation of the policy in turn, with u (B, random_columns(policy)) as randomness."""
    column = 0
    for name in policy_names(policy):
        part = AUGMENTS[name]
        x = part.apply(x, u[:, column : column + part.columns])
        column += part.columns
    return x
