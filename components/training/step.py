"""One training step: d_steps discriminator updates, one generator update, the EMA; and the precision and memory
format it runs in. No host reads, so the whole step can be captured as a CUDA graph (graphs.py)."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from components.config import TrainConfig
from components.training.augment import augment
from components.training.losses import LOSSES, feature_matching
from components.training.networks import ARCHS
from components.training.regularizers import DStep, d_terms, needs_real_grad
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


def _seen(x: torch.Tensor, u: torch.Tensor, policy: str) -> torch.Tensor:
    """The images as D sees them: augmented under the policy with their own random numbers, or as they are."""
    return augment(x, u, policy) if policy else x


def _d_update(state: TrainState, cfg: TrainConfig, draw: tuple, fake: torch.Tensor, train_D, autocast, conditional: bool):
    """One discriminator update on one drawn batch and its fakes; returns (loss, real logits, fake logits, the real
    and fake images as D saw them)."""
    real, y_real, _, y_fake, u = draw
    columns = u.shape[1] // 2
    real_in = _seen(real, u[:, :columns], cfg.augment)
    if needs_real_grad(cfg.regularizers):
        real_in = real_in.detach().requires_grad_(True)
    with autocast():
        real_logits, _ = train_D(real_in, y_real if conditional else None)
        fake_logits, _ = train_D(_seen(fake.detach(), u[:, columns:], cfg.augment), y_fake if conditional else None)
        loss_d = LOSSES[cfg.loss].d(real_logits.float(), fake_logits.float(), cfg.real_label)
    extra = d_terms(DStep(real_in, real_logits, fake_logits, state.averages), cfg.regularizers)
    if extra is not None:
        loss_d = loss_d + extra
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    return loss_d, real_logits, fake_logits, real_in.detach(), u[:, columns:]


def train_step(state: TrainState, cfg: TrainConfig, draws: list[tuple], nets, autocast, conditional: bool) -> torch.Tensor:
    """d_steps discriminator updates (one drawn batch each), then one generator update; returns the step's tracked
    values (on device). No host reads: the whole step can be captured as a CUDA graph."""
    train_G, train_D = nets
    G, D = state.G, state.D
    for i, draw in enumerate(draws):
        _, _, z, y_fake, _ = draw
        # Only the last D step's fakes feed G's update; earlier ones need no graph (and DDP wants one backward per
        # forward).
        with autocast(), nullcontext() if i == cfg.d_steps - 1 else torch.no_grad():
            fake = train_G(z, y_fake if conditional else None)
        loss_d, real_logits, fake_logits, real_seen, u_fake = _d_update(state, cfg, draw, fake, train_D, autocast, conditional)
        grad_d = grad_norm(D)
        state.opt_d.step()
    y_real = draws[-1][1]
    # G's update needs D's input gradients but not its weight gradients: backward only into G's parameters (and,
    # under DDP, without a gradient all-reduce for D). D sees the fakes under the same augmentation as in its step.
    with getattr(D, "no_sync", nullcontext)():
        with autocast():
            gen_logits, gen_features = train_D(_seen(fake, u_fake, cfg.augment), y_fake if conditional else None)
            loss_g = LOSSES[cfg.loss].g(gen_logits.float())
            if cfg.feature_matching:
                with torch.no_grad():
                    _, real_features = train_D(real_seen, y_real if conditional else None)
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
