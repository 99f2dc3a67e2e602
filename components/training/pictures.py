"""Pictures people look at instead of reading numbers: sample grids and loss curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from components.core.pixels import to_uint8


def grid(images: torch.Tensor, columns: int | None = None, scale: int = 4, pad: int = 1) -> np.ndarray:
    """Tile images in [-1, 1] (N, C, H, W) into one uint8 picture (H', W') or (H', W', 3), enlarged `scale` times."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    pixels = to_uint8(images).numpy()
    canvas = np.full((c, rows * (h + pad) + pad, columns * (w + pad) + pad), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = pixels[i]
    canvas = canvas.repeat(scale, axis=1).repeat(scale, axis=2)
    return canvas[0] if c == 1 else canvas.transpose(1, 2, 0)


def save_grid(images: torch.Tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(images)).save(path)
    return path


def save_loss_plot(history: dict[str, list[float]], path: Path, title: str = "GAN losses") -> Path:
    """Discriminator and generator loss, and D's mean outputs, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("loss_d", "loss_g"):
        ax1.plot(history["step"], history[key], label=key)
    ax1.set(xlabel="step", ylabel="loss", title=title)
    ax1.legend()
    for key in ("d_real", "d_fake"):
        ax2.plot(history["step"], history[key], label=key)
    ax2.set(xlabel="step", ylabel="mean D output", ylim=(0, 1), title="discriminator outputs")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
