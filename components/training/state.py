"""What a training run holds between steps (models, optimizers, random state, data order) and what a checkpoint
stores of it: built fresh, restored from the newest valid checkpoint, or written out."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from components.config import TrainConfig
from components.core.names import D_FAKE, D_REAL, GRAD_D, GRAD_G, LOSS_D, LOSS_G
from components.training.checkpoints import latest_valid
from components.training.networks import ARCHS, DOptions, GeneratorSpec, build_discriminator, build_generator
from components.training.optimizers import OPTIMIZERS

# The values one step returns, in this order, and the loop logs.
TRACKED = (LOSS_D, LOSS_G, D_REAL, D_FAKE, GRAD_D, GRAD_G)


def model_spec(cfg: TrainConfig, channels: int, image_size: int, num_classes: int) -> GeneratorSpec:
    """The description a generator is rebuilt from (stored with every checkpoint and export)."""
    return GeneratorSpec(
        arch=cfg.arch,
        z_dim=cfg.z_dim,
        channels=channels,
        image_size=image_size,
        base_channels=cfg.base_channels,
        extra_layers=cfg.extra_layers,
        num_classes=num_classes if ARCHS[cfg.arch].conditional else 0,
    )


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel (or torch.compile) wrapper."""
    return cast(torch.nn.Module, module.module) if hasattr(module, "module") else module


@dataclass
class TrainState:
    """Everything the next step depends on: what a checkpoint holds."""

    G: torch.nn.Module
    D: torch.nn.Module
    ema: torch.nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rng: torch.Generator  # all of the loop's randomness: data order, latents, fake labels
    order: torch.Tensor
    cursor: int
    history: dict[str, list[float]]
    averages: torch.Tensor  # (2,): the LeCam regularizer's moving averages of D's real and fake logits
    start: int = 1  # the first step to run


def d_options(cfg: TrainConfig) -> DOptions:
    return DOptions(cfg.minibatch_discrimination, cfg.spectral_norm, cfg.d_conditioning == "projection")


def build_state(
    cfg: TrainConfig, spec: GeneratorSpec, seed: int, n: int, device: torch.device, fmt, graphs: bool
) -> tuple[TrainState, torch.Tensor]:
    """Fresh models, optimizers and random state; returns (state, the fixed latents of the sample grids)."""
    torch.manual_seed(seed)
    # torch's stub of Module.to lacks memory_format, which Module.to accepts
    G = build_generator(spec).to(device, memory_format=fmt)  # type: ignore[call-overload]
    D = build_discriminator(spec, d_options(cfg)).to(device, memory_format=fmt)  # type: ignore[call-overload]
    ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    make_optimizer = OPTIMIZERS[cfg.optimizer]
    # One generator on the training device: nothing crosses from host to device per step, and every rank draws
    # the same global batch.
    rng = torch.Generator(device=device).manual_seed(seed)
    fixed_z = torch.randn(64, cfg.z_dim, generator=rng, device=device)
    order = torch.randperm(n, generator=rng, device=device)
    state = TrainState(
        G,
        D,
        ema,
        make_optimizer(G.parameters(), cfg, graphs),
        make_optimizer(D.parameters(), cfg, graphs),
        rng,
        order,
        0,
        {"step": [], **{k: [] for k in TRACKED}},
        torch.zeros(2, device=device),
    )
    return state, fixed_z


def restore_state(state: TrainState, checkpoint_dir: Path, device: torch.device) -> None:
    """Continue from the newest checkpoint that loads, if any."""
    found = latest_valid(checkpoint_dir)
    if found is None:
        return
    saved = found[1]
    state.G.load_state_dict(saved["G"])
    state.D.load_state_dict(saved["D"])
    state.opt_g.load_state_dict(saved["opt_g"])
    state.opt_d.load_state_dict(saved["opt_d"])
    if state.ema is not None and saved.get("ema") is not None:
        state.ema.load_state_dict(saved["ema"])
    if "averages" in saved:  # checkpoints from before the regularizers have none (and ran without them)
        state.averages.copy_(saved["averages"])
    state.rng.set_state(saved["rng"])
    torch.set_rng_state(saved["torch_rng"])
    state.order, state.cursor, state.history, state.start = saved["order"].to(device), saved["cursor"], saved["history"], saved["step"] + 1


def checkpoint_payload(state: TrainState, step: int, config_dict: dict | None, spec: GeneratorSpec) -> dict:
    return {
        "step": step,
        "G": unwrap(state.G).state_dict(),
        "D": unwrap(state.D).state_dict(),
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "ema": state.ema.state_dict() if state.ema is not None else None,
        "rng": state.rng.get_state(),
        "torch_rng": torch.get_rng_state(),
        "order": state.order.cpu(),
        "cursor": state.cursor,
        "averages": state.averages.cpu(),
        "history": state.history,
        "config": config_dict or {},
        "spec": spec.to_dict(),
    }
