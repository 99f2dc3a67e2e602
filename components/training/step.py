"""One training step: d_steps discriminator updates, one generator update, the EMA; and the precision and memory
format it runs in. No host reads, so the whole step can be captured as a CUDA graph (graphs.py)."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from components.config import TrainConfig
from components.training.losses import LOSSES, feature_matching
from components.training.networks import ARCHS
from components.training.state import TrainState, unwrap


def speed_settings(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.memory_format]:
    """(bf16 autocast?, memory format) for this config on this device: the fast paths are on by default on CUDA
    and can be forced on CPU (where the tests exercise them)."""
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    channels_last = ARCHS[cfg.arch].convolutional and (
        cfg.memory_format == "channels_last" or (cfg.memory_format == "auto" and device.type == "cuda")
    )
    return bf16, torch.channels_last if channels_last else torch.contiguous_format


def grad_norm(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=next(module.parameters()).device)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    buffers = list(ema.buffers())
    if buffers:  # the mlp has none
        torch._foreach_copy_(buffers, list(model.buffers()))


def train_step(state: TrainState, cfg: TrainConfig, draws: list[tuple], nets, autocast, conditional: bool) -> torch.Tensor:
    """d_steps discriminator updates (one drawn batch each), then one generator update; returns the step's tracked
    values (on device). No host reads: the whole step can be captured as a CUDA graph."""
    train_G, train_D = nets
    G, D = state.G, state.D
    for i, (real, y_real, z, y_fake) in enumerate(draws):
        # Only the last D step's fakes feed G's update; earlier ones need no graph (and DDP wants one backward per
        # forward).
        with autocast(), nullcontext() if i == cfg.d_steps - 1 else torch.no_grad():
            fake = train_G(z, y_fake if conditional else None)
        with autocast():
            real_logits, _ = train_D(real, y_real if conditional else None)
            fake_logits, _ = train_D(fake.detach(), y_fake if conditional else None)
            loss_d = LOSSES[cfg.loss].d(real_logits.float(), fake_logits.float(), cfg.real_label)
        state.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        grad_d = grad_norm(D)
        state.opt_d.step()
    # G's update needs D's input gradients but not its weight gradients: backward only into G's parameters (and,
    # under DDP, without a gradient all-reduce for D).
    with getattr(D, "no_sync", nullcontext)():
        with autocast():
            gen_logits, gen_features = train_D(fake, y_fake if conditional else None)
            loss_g = LOSSES[cfg.loss].g(gen_logits.float())
            if cfg.feature_matching:
                with torch.no_grad():
                    _, real_features = train_D(real, y_real if conditional else None)
                loss_g = loss_g + feature_matching(real_features.float(), gen_features.float())
        state.opt_g.zero_grad(set_to_none=True)
        loss_g.backward(inputs=list(G.parameters()))
    grad_g = grad_norm(G)
    state.opt_g.step()
    if state.ema is not None:
        ema_update(state.ema, unwrap(G), cfg.ema_decay)
    return torch.stack(
        [
            loss_d.detach(),
            loss_g.detach(),
            torch.sigmoid(real_logits.detach().float()).mean(),
            torch.sigmoid(fake_logits.detach().float()).mean(),
            grad_d,
            grad_g,
        ]
    )
