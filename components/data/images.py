"""Listing and loading the image files of a folder: one rule for what counts as data everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from components.core.errors import DataError

# Image suffixes and the format their content must have.
SUFFIX_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def is_hidden(rel: Path) -> bool:
    """Hidden files and folders (.DS_Store, .git, .ipynb_checkpoints) are never data."""
    return any(part.startswith(".") for part in rel.parts)


def list_files(root: Path) -> list[Path]:
    """Every non-hidden file (or link) under root, sorted, as paths relative to root: what a dataset holds."""
    return sorted(p.relative_to(root) for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and not is_hidden(p.relative_to(root)))


def list_image_files(root: Path) -> list[Path]:
    """The files of list_files whose suffix is an image format's, relative to root (for folders that hold more
    than images, like a folder handed to `ganops fid`)."""
    return [rel for rel in list_files(root) if rel.suffix.lower() in SUFFIX_FORMATS and (root / rel).is_file()]


def load_images(root: Path, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Load a validated ImageFolder as uint8 (N, C, H, W) and label indices into `labels` (N,)."""
    images, targets = [], []
    index = {name: i for i, name in enumerate(labels)}
    for rel in list_files(root):
        with Image.open(root / rel) as im:
            arr = np.asarray(im)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        images.append(arr.transpose(2, 0, 1))
        targets.append(index[rel.parts[0]])
    if not images:
        raise DataError(f"dataset folder {root} holds no images")
    return np.stack(images).astype(np.uint8), np.asarray(targets, dtype=np.int64)
