"""The GAN training loop: one loop for every architecture, loss and trick in the config.

CPU, one GPU, or many through torchrun + DistributedDataParallel. Every rank draws the same global batch
(indices and latents) from one seeded generator and takes its own slice, so N processes compute the gradients
of the single-process batch. Checkpoints every `checkpoint_every` steps hold everything the next step depends
on, so a resumed run is bitwise identical to an uninterrupted one on CPU.

The loop knows nothing of MLflow or Prefect: progress, metrics and samples leave through callbacks
(`on_metrics(step, dict)`, `on_samples(step, images)`), as in StyleGAN2-ADA's progress_fn.
`train_gan` reads as its phases: set up (state.py, batches.py, parallel.py, graphs.py), then per step: the step
(step.py), then bookkeeping (metrics, samples, checkpoints).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from components.config import TrainConfig
from components.core.device import dist_info, keep_freed_host_memory, pick_device
from components.core.errors import GanopsError
from components.core.names import IMAGES_PER_S
from components.training.augment import random_columns
from components.training.batches import Batches, place_data
from components.training.checkpoints import save_checkpoint
from components.training.graphs import graphs_enabled, step_runner
from components.training.networks import ARCHS, GeneratorSpec
from components.training.parallel import distribute
from components.training.state import TRACKED, TrainState, build_state, checkpoint_payload, model_spec, restore_state, unwrap
from components.training.step import speed_settings

MetricsFn = Callable[[int, dict], None]
SamplesFn = Callable[[int, torch.Tensor], None]


class ProgressBar(Protocol):
    """What a progress callback may return (a tqdm bar, core.progress.PrintedProgress)."""

    def update(self, n: int) -> object: ...

    def close(self) -> object: ...


class ProgressFn(Protocol):
    def __call__(self, total: int, *, initial: int = 0) -> ProgressBar | None: ...


@dataclass
class TrainResult:
    generator: torch.nn.Module  # the EMA generator when ema_decay > 0
    spec: GeneratorSpec
    history: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    device: str = "cpu"


@dataclass
class _Run:
    """A run set up and ready to step: its state, where it runs, how it draws batches and runs a step."""

    state: TrainState
    spec: GeneratorSpec
    device: torch.device
    rank: int
    batches: Batches
    step_fn: Callable[[list[tuple]], torch.Tensor]
    fixed_z: torch.Tensor  # the latents (and labels) of every sample grid
    fixed_y: torch.Tensor
    compiled_graphs: bool  # torch.compile's own CUDA graphs: each step must be marked


def _check_shapes(images: np.ndarray, labels: np.ndarray | None, cfg: TrainConfig, world: int, num_classes: int | None) -> int:
    """The number of classes; raises GanopsError for data the config cannot train on."""
    _, _, height, width = images.shape
    if height != width:
        raise GanopsError(f"training needs square images, got {height}x{width}")
    if cfg.batch_size % world:
        raise GanopsError(f"train.batch_size {cfg.batch_size} must divide evenly over {world} processes")
    classes = num_classes or (int(labels.max()) + 1 if labels is not None and len(labels) else 0)
    if ARCHS[cfg.arch].conditional and (labels is None or classes < 2):
        raise GanopsError(f"train.arch {cfg.arch} needs a labelled dataset with at least 2 classes")
    return classes


def _set_up(
    images: np.ndarray,
    labels: np.ndarray | None,
    cfg: TrainConfig,
    seed: int,
    checkpoint_dir: Path | None,
    resume: bool,
    num_classes: int | None,
) -> _Run:
    """Models, optimizers, data placement, DDP, compilation and the step runner, resumed when asked."""
    rank, world, local_rank = dist_info()
    device = pick_device(cfg.device, local_rank)
    classes = _check_shapes(images, labels, cfg, world, num_classes)
    n, channels, size, _ = images.shape
    spec = model_spec(cfg, channels, size, classes)
    bf16, fmt = speed_settings(cfg, device)
    graphs = graphs_enabled(cfg, device, world)
    if device.type == "cuda":  # fixed shapes: pick the fastest convolution algorithms once, unless asked to be deterministic
        torch.backends.cudnn.benchmark = not torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        keep_freed_host_memory()  # steps reuse freed activations' memory instead of faulting in new pages
    state, fixed_z = build_state(cfg, spec, seed, n, device, fmt, graphs)
    if resume and checkpoint_dir is not None:
        restore_state(state, checkpoint_dir, device)
    data, targets = place_data(images, labels, cfg, device, world)
    if world > 1:
        distribute(state, device, local_rank)
    nets = tuple(torch.compile(m, mode=cfg.compile_mode) for m in (state.G, state.D)) if cfg.compile else (state.G, state.D)
    shard = slice(rank * cfg.batch_size // world, (rank + 1) * cfg.batch_size // world)
    return _Run(
        state,
        spec,
        device,
        rank,
        Batches(state, data, targets, cfg.batch_size, cfg.z_dim, classes, shard, fmt, cfg.class_balanced, random_columns(cfg.augment)),
        step_runner(state, cfg, nets, bf16, device, spec.conditional, graphs),
        fixed_z,
        torch.arange(64, device=device) % max(classes, 1),
        cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune"),
    )


def _window_metrics(step: int, sums: torch.Tensor, window: int, images: int, seconds: float, checkpoint_dir: Path | None) -> dict:
    """The means of the last logging window (the loop's only host read); raises GanopsError when any is not finite."""
    means = (sums / window).tolist()
    if not all(math.isfinite(v) for v in means):
        raise GanopsError(
            f"training diverged at step {step}: "
            + ", ".join(f"{k}={v}" for k, v in zip(TRACKED, means, strict=True))
            + (f"; the last good checkpoint is in {checkpoint_dir}" if checkpoint_dir else "")
        )
    return {**dict(zip(TRACKED, means, strict=True)), IMAGES_PER_S: images / max(seconds, 1e-9)}


def _record(state: TrainState, step: int, metrics: dict, on_metrics: MetricsFn | None) -> None:
    """A logging window's means into the run's history (kept in checkpoints) and out through on_metrics."""
    state.history["step"].append(step)
    for key in TRACKED:
        state.history[key].append(metrics[key])
    if on_metrics is not None:
        on_metrics(step, metrics)


def _show_samples(run: _Run, step: int, on_samples: SamplesFn) -> None:
    """The sample grid of the EMA generator (else G) at this step, through on_samples."""
    state = run.state
    shown = state.ema if state.ema is not None else unwrap(state.G)
    shown.eval()
    with torch.no_grad():
        on_samples(step, shown(run.fixed_z, run.fixed_y if run.spec.conditional else None).float().cpu())
    shown.train(state.ema is None)


def train_gan(
    images: np.ndarray,
    labels: np.ndarray | None,
    cfg: TrainConfig,
    seed: int,
    config_dict: dict | None = None,
    on_metrics: MetricsFn | None = None,
    on_samples: SamplesFn | None = None,
    progress: ProgressFn | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    num_classes: int | None = None,
) -> TrainResult:
    """Train on uint8 images (N, C, H, W) with integer labels (N,). Deterministic on CPU for a given seed.

    progress(total, initial=steps already done) may return an object with update(n) and close() (e.g. a tqdm bar).
    Raises GanopsError when a loss becomes NaN or infinite; the checkpoints written so far are all finite.
    """
    run = _set_up(images, labels, cfg, seed, checkpoint_dir, resume, num_classes)
    state, main = run.state, run.rank == 0
    bar = progress(cfg.steps, initial=state.start - 1) if progress and main else None
    sums = torch.zeros(len(TRACKED), device=run.device)  # on device: no host sync inside the inner loop
    window, started, window_start = 0, time.perf_counter(), time.perf_counter()
    state.G.train()
    state.D.train()
    for step in range(state.start, cfg.steps + 1):
        if run.compiled_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may now be overwritten
        sums += run.step_fn([run.batches.next() for _ in range(cfg.d_steps)])
        window += 1
        if bar is not None:
            bar.update(1)
        last = step == cfg.steps
        if step % cfg.log_every == 0 or last:
            now = time.perf_counter()
            metrics = _window_metrics(step, sums, window, window * cfg.batch_size * cfg.d_steps, now - window_start, checkpoint_dir)
            _record(state, step, metrics, on_metrics if main else None)
            sums.zero_()
            window, window_start = 0, now
        if on_samples and main and (step % cfg.sample_every == 0 or last):
            _show_samples(run, step, on_samples)
        if checkpoint_dir is not None and main and (step % cfg.checkpoint_every == 0 or last):
            if window and not bool(torch.isfinite(sums).all()):
                raise GanopsError(f"training diverged before step {step}; the last good checkpoint is in {checkpoint_dir}")
            save_checkpoint(checkpoint_dir, step, checkpoint_payload(state, step, config_dict, run.spec))
    if bar is not None:
        bar.close()
    final = state.ema if state.ema is not None else unwrap(state.G)
    # torch's stub of Module.to lacks memory_format, which Module.to accepts
    final = final.to("cpu", memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    return TrainResult(
        generator=final,
        spec=run.spec,
        history=state.history,
        steps=cfg.steps,
        resumed_from=state.start - 1,
        seconds=time.perf_counter() - started,
        device=str(run.device),
    )
