"""The GAN training engine: one loop for every architecture, loss and trick in the config.

CPU, one GPU, or many through torchrun + DistributedDataParallel. Every rank draws the same global batch
(indices and latents) from one seeded generator and takes its own slice, so N processes compute the gradients
of the single-process batch. Checkpoints every `checkpoint_every` steps hold everything the next step depends
on, so a resumed run is bitwise identical to an uninterrupted one on CPU.

The loop knows nothing of MLflow or Prefect: progress, metrics and samples leave through callbacks
(`on_metrics(step, dict)`, `on_samples(step, images)`), as in StyleGAN2-ADA's progress_fn.
`train_gan` reads as its phases: set up, resume, wrap for DDP, then per step: D update(s), G update, bookkeeping.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from components.config import TrainConfig
from components.core.device import dist_info, keep_freed_host_memory, pick_device
from components.core.errors import GanopsError
from components.core.names import D_FAKE, D_REAL, GRAD_D, GRAD_G, IMAGES_PER_S, LOSS_D, LOSS_G
from components.core.pixels import to_unit_range
from components.training.checkpoints import latest_valid, save_checkpoint
from components.training.losses import LOSSES, feature_matching
from components.training.networks import ARCHS, GeneratorSpec, build_discriminator, build_generator
from components.training.optimizers import OPTIMIZERS

MetricsFn = Callable[[int, dict], None]
SamplesFn = Callable[[int, torch.Tensor], None]

TRACKED = (LOSS_D, LOSS_G, D_REAL, D_FAKE, GRAD_D, GRAD_G)


@dataclass
class TrainResult:
    generator: torch.nn.Module  # the EMA generator when ema_decay > 0
    spec: GeneratorSpec
    history: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    device: str = "cpu"


def model_spec(cfg: TrainConfig, channels: int, image_size: int, num_classes: int) -> GeneratorSpec:
    """The description a generator is rebuilt from (stored with every checkpoint and export)."""
    return GeneratorSpec(arch=cfg.arch, z_dim=cfg.z_dim, channels=channels, image_size=image_size,
                         base_channels=cfg.base_channels, extra_layers=cfg.extra_layers,
                         num_classes=num_classes if ARCHS[cfg.arch].conditional else 0)


def speed_settings(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.memory_format]:
    """(bf16 autocast?, memory format) for this config on this device: the fast paths are on by default on CUDA
    and can be forced on CPU (where the tests exercise them)."""
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    channels_last = ARCHS[cfg.arch].convolutional and (cfg.memory_format == "channels_last" or (cfg.memory_format == "auto" and device.type == "cuda"))
    return bf16, torch.channels_last if channels_last else torch.contiguous_format


def graphs_enabled(cfg: TrainConfig, device: torch.device, world: int) -> bool:
    """Whether the step runs as one CUDA graph: on CUDA, in one process (NCCL inside a graph needs more care than
    it pays), and not under torch.compile (whose own cudagraphs would nest)."""
    return cfg.cuda_graphs and device.type == "cuda" and world == 1 and not cfg.compile


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=next(module.parameters()).device)


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    buffers = list(ema.buffers())
    if buffers:  # the mlp has none
        torch._foreach_copy_(buffers, list(model.buffers()))


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if hasattr(module, "module") else module




@dataclass
class _State:
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
    start: int = 1  # the first step to run


def _build(cfg: TrainConfig, spec: GeneratorSpec, seed: int, n: int, device: torch.device, fmt, graphs: bool) -> tuple[_State, torch.Tensor]:
    """Fresh models, optimizers and random state; returns (state, the fixed latents of the sample grids)."""
    torch.manual_seed(seed)
    G = build_generator(spec).to(device, memory_format=fmt)
    D = build_discriminator(spec, cfg.minibatch_discrimination).to(device, memory_format=fmt)
    ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    make_optimizer = OPTIMIZERS[cfg.optimizer]
    # One generator on the training device: nothing crosses from host to device per step, and every rank draws
    # the same global batch.
    rng = torch.Generator(device=device).manual_seed(seed)
    fixed_z = torch.randn(64, cfg.z_dim, generator=rng, device=device)
    order = torch.randperm(n, generator=rng, device=device)
    state = _State(G, D, ema, make_optimizer(G.parameters(), cfg, graphs), make_optimizer(D.parameters(), cfg, graphs), rng, order, 0,
                   {"step": [], **{k: [] for k in TRACKED}})
    return state, fixed_z


def _restore(state: _State, checkpoint_dir: Path, device: torch.device) -> None:
    """Continue from the newest checkpoint that loads, if any."""
    found = latest_valid(checkpoint_dir)
    if found is None:
        return
    saved = found[1]
    state.G.load_state_dict(saved["G"]); state.D.load_state_dict(saved["D"])
    state.opt_g.load_state_dict(saved["opt_g"]); state.opt_d.load_state_dict(saved["opt_d"])
    if state.ema is not None and saved.get("ema") is not None:
        state.ema.load_state_dict(saved["ema"])
    state.rng.set_state(saved["rng"]); torch.set_rng_state(saved["torch_rng"])
    state.order, state.cursor, state.history, state.start = saved["order"].to(device), saved["cursor"], saved["history"], saved["step"] + 1


def _distribute(state: _State, device: torch.device, local_rank: int) -> None:
    """Wrap G and D in DistributedDataParallel (gloo on CPU, NCCL on GPUs)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)  # NCCL's communicators use the current device: one GPU per rank
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    ids = [local_rank] if cuda else None
    state.G, state.D = DDP(state.G, device_ids=ids), DDP(state.D, device_ids=ids)


def stream_from_host(setting: str, device: torch.device, nbytes: int, free_bytes: int) -> bool:
    """Whether each batch is gathered on the host and copied to the device (True), or the whole uint8 set is put
    where training runs and indexed there. auto: on CUDA, stream when the set takes more than half the free memory."""
    if setting != "auto":
        return setting == "host"
    return device.type == "cuda" and nbytes > free_bytes // 2


class _StagedRows:
    """Rows of a host array (in RAM or memory-mapped) gathered into a ring of staging buffers, pinned on CUDA, and
    copied to the device without blocking. The loop reads nothing back from the device between logging steps, so
    the CPU runs ahead of the GPU: the gather and copy of the next batch overlap the kernels of the current step.
    An event per buffer keeps it from being refilled before its copy has run."""

    SLOTS = 3

    def __init__(self, images: np.ndarray, device: torch.device, rows: int):
        cuda = device.type == "cuda"
        self.images, self.device, self.slot = images, device, 0
        self.buffers = [torch.empty((rows, *images.shape[1:]), dtype=torch.uint8, pin_memory=cuda) for _ in range(self.SLOTS)]
        self.events = [torch.cuda.Event() if cuda else None for _ in range(self.SLOTS)]

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        slot, self.slot = self.slot, (self.slot + 1) % self.SLOTS
        buffer, event = self.buffers[slot][: len(idx)], self.events[slot]
        if event is not None:
            event.synchronize()  # its last copy has run
        np.take(self.images, idx.numpy(), axis=0, out=buffer.numpy(), mode="clip")  # indices are in range; clip: unbuffered
        rows = buffer.to(self.device, non_blocking=True)
        if event is not None:
            event.record(torch.cuda.current_stream(self.device))
        return rows


class _Batches:
    """The global batch every rank draws (same indices, latents and fake labels), sliced to this rank's share.

    The draws come from one generator on the training device whether the images sit there (indexed in place) or
    on the host (`staged`: rows gathered and copied per batch), so where the data lives does not change the run."""

    def __init__(self, state: _State, data: torch.Tensor | _StagedRows, targets: torch.Tensor, batch: int, z_dim: int,
                 classes: int, shard: slice, fmt, balanced: bool = False):
        self.state, self.data, self.targets, self.batch, self.z_dim = state, data, targets, batch, z_dim
        self.classes, self.shard, self.fmt, self.n = max(classes, 1), shard, fmt, len(targets)
        self.host_order, self.order_seen = None, None
        # class_balanced: a class drawn uniformly among those present, then one of its images uniformly, so every
        # class is seen equally often (a minority class's few images repeat); O(batch) per step at any dataset size.
        if balanced:
            counts = torch.bincount(targets, minlength=self.classes)
            self.present = torch.nonzero(counts).flatten()
            self.by_class, self.counts = torch.argsort(targets, stable=True), counts
            self.starts = torch.cumsum(counts, 0) - counts
        self.balanced = balanced

    def _indices(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's image indices (on the device) and, for staged data, the same on the host."""
        s, device = self.state, self.targets.device
        staged = isinstance(self.data, _StagedRows)
        if self.balanced:
            pick = torch.randint(len(self.present), (self.batch,), generator=s.rng, device=device)
            c = self.present[pick]
            u = torch.rand(self.batch, generator=s.rng, device=device, dtype=torch.float64)
            offset = torch.minimum((u * self.counts[c]).long(), self.counts[c] - 1)
            idx = self.by_class[self.starts[c] + offset][self.shard]
            # staged + balanced: one host read per draw, which waits for the device, so the gather does not overlap
            # the step (class_balanced is for small imbalanced sets, which fit on the device)
            return idx, idx.cpu() if staged else None
        if s.cursor + self.batch > self.n:
            s.order, s.cursor = torch.randperm(self.n, generator=s.rng, device=device), 0
        window = slice(s.cursor, s.cursor + self.batch)
        s.cursor += self.batch
        if staged and self.order_seen is not s.order:  # one host read per epoch (or after a resume)
            self.host_order, self.order_seen = s.order.cpu(), s.order
        return s.order[window][self.shard], self.host_order[window][self.shard] if staged else None

    def next(self):
        s, device = self.state, self.targets.device
        idx, host_idx = self._indices()
        z = torch.randn(self.batch, self.z_dim, generator=s.rng, device=device)[self.shard]
        y_fake = torch.randint(self.classes, (self.batch,), generator=s.rng, device=device)[self.shard]
        rows = self.data(host_idx) if host_idx is not None else self.data[idx]
        real = to_unit_range(rows)  # uint8 kept; one batch made float at a time
        return real.contiguous(memory_format=self.fmt), self.targets[idx], z, y_fake


def _place_data(images: np.ndarray, labels: np.ndarray | None, cfg: TrainConfig, device: torch.device,
                world: int) -> tuple[torch.Tensor | _StagedRows, torch.Tensor]:
    """(images as the loop indexes them, label indices on the device). uint8 as given: indexed where training runs (a
    memory-mapped cache stays on disk on CPU; on CUDA the set is copied to the device, a quarter of its float32
    size), or staged batch by batch from the host when it does not fit (train.data_placement)."""
    images = images.numpy() if isinstance(images, torch.Tensor) else images
    if labels is not None and len(labels) != len(images):
        raise GanopsError(f"{len(images)} images but {len(labels)} labels: every image needs one")
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
    data = (_StagedRows(images, device, cfg.batch_size // world) if stream_from_host(cfg.data_placement, device, images.nbytes, free)
            else torch.from_numpy(images).to(device))
    targets = (torch.from_numpy(np.asarray(labels)).long() if labels is not None else torch.zeros(len(images), dtype=torch.long)).to(device)
    return data, targets


def _train_step(state: _State, cfg: TrainConfig, draws: list[tuple], nets, autocast, conditional: bool) -> torch.Tensor:
    """d_steps discriminator updates (one drawn batch each), then one generator update; returns the step's tracked
    values (on device). No host reads: the whole step can be captured as a CUDA graph."""
    train_G, train_D = nets
    G, D = state.G, state.D
    for i, (real, y_real, z, y_fake) in enumerate(draws):
        # Only the last D step's fakes feed G's update; earlier ones need no graph (and DDP wants one backward per
        # forward).
        with autocast(), (nullcontext() if i == cfg.d_steps - 1 else torch.no_grad()):
            fake = train_G(z, y_fake if conditional else None)
        with autocast():
            real_logits, _ = train_D(real, y_real if conditional else None)
            fake_logits, _ = train_D(fake.detach(), y_fake if conditional else None)
            loss_d = LOSSES[cfg.loss].d(real_logits.float(), fake_logits.float(), cfg.real_label)
        state.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        grad_d = _grad_norm(D)
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
    grad_g = _grad_norm(G)
    state.opt_g.step()
    if state.ema is not None:
        _ema_update(state.ema, _unwrap(G), cfg.ema_decay)
    return torch.stack([loss_d.detach(), loss_g.detach(), torch.sigmoid(real_logits.detach().float()).mean(),
                        torch.sigmoid(fake_logits.detach().float()).mean(), grad_d, grad_g])


class _GraphedStep:
    """The whole training step captured once as a CUDA graph and replayed, each step's batches copied into its
    static inputs: one launch per step instead of several hundred small kernels (a DCGAN at batch 128 is bound by
    launches, not by arithmetic). The first WARMUP steps run eagerly on a side stream, as capture requires."""

    WARMUP = 3

    def __init__(self, run: Callable[[list[tuple]], torch.Tensor]):
        self.run, self.calls, self.graph, self.inputs, self.output = run, 0, None, None, None

    def __call__(self, draws: list[tuple]) -> torch.Tensor:
        if self.graph is None and self.calls < self.WARMUP:
            self.calls += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.run(draws)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            self.inputs = [tuple(t.clone() for t in draw) for draw in draws]
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.output = self.run(self.inputs)
        else:
            for static, draw in zip(self.inputs, draws):
                for dst, src in zip(static, draw):
                    dst.copy_(src)
        self.graph.replay()
        return self.output


def _step_runner(state: _State, cfg: TrainConfig, nets, bf16: bool, device: torch.device, conditional: bool, graphs: bool):
    """draws -> the step's tracked values: eager, or through a CUDA graph (autocast's weight cache off, as capture needs)."""
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not graphs)) if bf16 else nullcontext

    def run(draws: list[tuple]) -> torch.Tensor:
        return _train_step(state, cfg, draws, nets, autocast, conditional)
    return _GraphedStep(run) if graphs else run


def _window_metrics(step: int, sums: torch.Tensor, window: int, images: int, seconds: float, checkpoint_dir: Path | None) -> dict:
    """The means of the last logging window (the loop's only host read); raises GanopsError when any is not finite."""
    means = (sums / window).tolist()
    if not all(math.isfinite(v) for v in means):
        raise GanopsError(f"training diverged at step {step}: " + ", ".join(f"{k}={v}" for k, v in zip(TRACKED, means))
                          + (f"; the last good checkpoint is in {checkpoint_dir}" if checkpoint_dir else ""))
    return {**dict(zip(TRACKED, means)), IMAGES_PER_S: images / max(seconds, 1e-9)}


def _checkpoint(state: _State, step: int, config_dict: dict | None, spec: GeneratorSpec) -> dict:
    return {"step": step, "G": _unwrap(state.G).state_dict(), "D": _unwrap(state.D).state_dict(),
            "opt_g": state.opt_g.state_dict(), "opt_d": state.opt_d.state_dict(),
            "ema": state.ema.state_dict() if state.ema is not None else None,
            "rng": state.rng.get_state(), "torch_rng": torch.get_rng_state(), "order": state.order.cpu(),
            "cursor": state.cursor, "history": state.history, "config": config_dict or {}, "spec": spec.to_dict()}


def train_gan(
    images: np.ndarray,
    labels: np.ndarray | None,
    cfg: TrainConfig,
    seed: int,
    config_dict: dict | None = None,
    on_metrics: MetricsFn | None = None,
    on_samples: SamplesFn | None = None,
    progress: Callable[[int], object] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    num_classes: int | None = None,
) -> TrainResult:
    """Train on uint8 images (N, C, H, W) with integer labels (N,). Deterministic on CPU for a given seed.

    progress(total, initial=steps already done) may return an object with update(n) and close() (e.g. a tqdm bar).
    Raises GanopsError when a loss becomes NaN or infinite; the checkpoints written so far are all finite.
    """
    # Longer than 60 lines: it is the loop itself, and each phase is one call.
    rank, world, local_rank = dist_info()
    device = pick_device(cfg.device, local_rank)
    n, channels, height, width = images.shape
    if height != width:
        raise GanopsError(f"training needs square images, got {height}x{width}")
    if cfg.batch_size % world:
        raise GanopsError(f"train.batch_size {cfg.batch_size} must divide evenly over {world} processes")
    classes = num_classes or (int(labels.max()) + 1 if labels is not None and len(labels) else 0)
    if ARCHS[cfg.arch].conditional and (labels is None or classes < 2):
        raise GanopsError(f"train.arch {cfg.arch} needs a labelled dataset with at least 2 classes")
    spec = model_spec(cfg, channels, height, classes)
    bf16, fmt = speed_settings(cfg, device)
    graphs = graphs_enabled(cfg, device, world)
    if device.type == "cuda":  # fixed shapes: pick the fastest convolution algorithms once, unless asked to be deterministic
        torch.backends.cudnn.benchmark = not torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        keep_freed_host_memory()  # steps reuse freed activations' memory instead of faulting in new pages

    state, fixed_z = _build(cfg, spec, seed, n, device, fmt, graphs)
    fixed_y = torch.arange(64, device=device) % max(classes, 1)
    if resume and checkpoint_dir is not None:
        _restore(state, checkpoint_dir, device)
    data, targets = _place_data(images, labels, cfg, device, world)
    if world > 1:
        _distribute(state, device, local_rank)
    nets = tuple(torch.compile(m, mode=cfg.compile_mode) for m in (state.G, state.D)) if cfg.compile else (state.G, state.D)
    step_fn = _step_runner(state, cfg, nets, bf16, device, spec.conditional, graphs)
    compiled_graphs = cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune")
    conditional = spec.conditional
    shard = slice(rank * cfg.batch_size // world, (rank + 1) * cfg.batch_size // world)
    batches = _Batches(state, data, targets, cfg.batch_size, cfg.z_dim, classes, shard, fmt, cfg.class_balanced)

    bar = progress(cfg.steps, initial=state.start - 1) if progress and rank == 0 else None
    sums = torch.zeros(len(TRACKED), device=device)  # on device: no host sync inside the inner loop
    window, started, window_start = 0, time.perf_counter(), time.perf_counter()
    state.G.train(); state.D.train()
    for step in range(state.start, cfg.steps + 1):
        if compiled_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may now be overwritten
        sums += step_fn([batches.next() for _ in range(cfg.d_steps)])
        window += 1
        if bar is not None:
            bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            metrics = _window_metrics(step, sums, window, window * cfg.batch_size * cfg.d_steps, now - window_start, checkpoint_dir)
            state.history["step"].append(step)
            for key in TRACKED:
                state.history[key].append(metrics[key])
            if on_metrics and rank == 0:
                on_metrics(step, metrics)
            sums.zero_()
            window, window_start = 0, now
        if on_samples and rank == 0 and (step % cfg.sample_every == 0 or step == cfg.steps):
            shown = state.ema if state.ema is not None else _unwrap(state.G)
            shown.eval()
            with torch.no_grad():
                on_samples(step, shown(fixed_z, fixed_y if conditional else None).float().cpu())
            shown.train(state.ema is None)
        if checkpoint_dir is not None and rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            if window and not bool(torch.isfinite(sums).all()):
                raise GanopsError(f"training diverged before step {step}; the last good checkpoint is in {checkpoint_dir}")
            save_checkpoint(checkpoint_dir, step, _checkpoint(state, step, config_dict, spec))
    if bar is not None:
        bar.close()
    final = (state.ema if state.ema is not None else _unwrap(state.G)).to("cpu", memory_format=torch.contiguous_format).eval()
    return TrainResult(generator=final, spec=spec, history=state.history, steps=cfg.steps, resumed_from=state.start - 1,
                       seconds=time.perf_counter() - started, device=str(device))
