"""The GAN training loop: DCGAN, non-saturating generator loss, Adam, one-sided label smoothing.

The loop knows nothing of MLflow or Prefect: progress, metrics and sample grids leave through callbacks
(`on_metrics(step, dict)`, `on_samples(step, images)`), as in StyleGAN2-ADA's progress_fn.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from components.config import TrainConfig
from components.errors import GanopsError
from components.networks import Discriminator, Generator

MetricsFn = Callable[[int, dict], None]
SamplesFn = Callable[[int, torch.Tensor], None]

# Metric keys: one spelling everywhere.
LOSS_D, LOSS_G, D_REAL, D_FAKE, IMAGES_PER_S = "loss_d", "loss_g", "d_real", "d_fake", "images_per_s"


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise GanopsError("train.device is 'cuda' but no CUDA device is available")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [-1, 1]."""
    return torch.from_numpy(images).float().div_(127.5).sub_(1.0)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float) -> torch.Tensor:
    """BCE with one-sided label smoothing: real targets are `real_label` (e.g. 0.9), fake targets stay 0."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): maximise the discriminator's belief that samples are real (Goodfellow et al. 2014, sec. 3)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@dataclass
class TrainResult:
    generator: Generator
    history: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    device: str = "cpu"


def train_gan(
    images: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    on_metrics: MetricsFn | None = None,
    on_samples: SamplesFn | None = None,
    progress: Callable[[int], object] | None = None,
) -> TrainResult:
    """Train a DCGAN on uint8 images (N, C, H, W). Deterministic on CPU for a given seed.

    progress(total) may return an object with update(n) and close() (e.g. a tqdm bar).
    Raises GanopsError when a loss becomes NaN or infinite.
    """
    torch.manual_seed(seed)
    device = pick_device(cfg.device)
    _, channels, height, width = images.shape
    if height != width:
        raise GanopsError(f"training needs square images, got {height}x{width}")
    data = to_unit_range(images).to(device)
    n = data.shape[0]
    batch = min(cfg.batch_size, n)
    G = Generator(cfg.z_dim, channels, height, cfg.base_channels, cfg.extra_layers).to(device)
    D = Discriminator(channels, height, cfg.base_channels, cfg.extra_layers).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    rng = torch.Generator(device="cpu").manual_seed(seed)
    fixed_z = torch.randn(64, cfg.z_dim, generator=rng).to(device)
    history: dict[str, list[float]] = {"step": [], LOSS_D: [], LOSS_G: [], D_REAL: [], D_FAKE: []}
    bar = progress(cfg.steps) if progress else None
    sums = torch.zeros(4, device=device)  # accumulated on device: no host sync inside the inner loop
    window, started, window_start = 0, time.perf_counter(), time.perf_counter()
    order, cursor = torch.randperm(n, generator=rng), 0
    for step in range(1, cfg.steps + 1):
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=rng), 0
        real = data[order[cursor : cursor + batch].to(device)]
        cursor += batch
        z = torch.randn(batch, cfg.z_dim, generator=rng).to(device)

        fake = G(z)
        real_logits, fake_logits = D(real), D(fake.detach())
        loss_d = discriminator_loss(real_logits, fake_logits, cfg.real_label)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        gen_logits = D(fake)
        loss_g = generator_loss_nonsaturating(gen_logits)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        sums += torch.stack([loss_d.detach(), loss_g.detach(), torch.sigmoid(real_logits).mean().detach(),
                             torch.sigmoid(fake_logits).mean().detach()])
        window += 1
        if bar is not None:
            bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            means = (sums / window).tolist()
            if not all(math.isfinite(v) for v in means[:2]):
                raise GanopsError(f"training diverged at step {step}: loss_d={means[0]}, loss_g={means[1]}")
            now = time.perf_counter()
            metrics = {LOSS_D: means[0], LOSS_G: means[1], D_REAL: means[2], D_FAKE: means[3],
                       IMAGES_PER_S: window * batch / max(now - window_start, 1e-9)}
            history["step"].append(step)
            for key in (LOSS_D, LOSS_G, D_REAL, D_FAKE):
                history[key].append(metrics[key])
            if on_metrics:
                on_metrics(step, metrics)
            sums.zero_()
            window, window_start = 0, now
        if on_samples and (step % cfg.sample_every == 0 or step == cfg.steps):
            G.eval()
            with torch.no_grad():
                on_samples(step, G(fixed_z).float().cpu())
            G.train()
    if bar is not None:
        bar.close()
    G.eval()
    return TrainResult(generator=G.cpu(), history=history, steps=cfg.steps,
                       seconds=time.perf_counter() - started, device=str(device))


def train_to_files(data_root, labels: list[str], cfg: TrainConfig, seed: int, out_dir, config_dict: dict,
                   on_metrics: MetricsFn | None = None, progress=None) -> dict:
    """Load the dataset, train, and write the generator (safetensors), sample grids and a loss plot to out_dir.

    Returns plain values: paths of the files written and a summary of the run.
    """
    from pathlib import Path

    from components.data import load_images
    from components.images import save_grid, save_loss_plot
    from components.weights import generator_spec, save_generator

    out_dir = Path(out_dir)
    images, _ = load_images(Path(data_root), labels)
    grids: list[str] = []

    def on_samples(step: int, samples: torch.Tensor) -> None:
        grids.append(str(save_grid(samples, out_dir / "samples" / f"step_{step:06d}.png")))

    result = train_gan(images, cfg, seed, on_metrics=on_metrics, on_samples=on_samples, progress=progress)
    spec = generator_spec(result.generator, images.shape[1], images.shape[2], cfg.base_channels, cfg.extra_layers)
    weights = save_generator(out_dir / "generator.safetensors", result.generator, spec, config_dict)
    plot = save_loss_plot(result.history, out_dir / "loss_curves.png")
    last = {k: v[-1] for k, v in result.history.items() if k != "step" and v}
    return {"weights": str(weights), "grids": grids, "loss_plot": str(plot), "steps": result.steps,
            "seconds": result.seconds, "device": result.device, "final": last, "images": int(len(images))}
