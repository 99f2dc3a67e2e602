"""The per-image manifest: one row per file, read without trusting names, built on all cores. Validation checks it
against the config (components.validation); `ganops data import` checks its rows before anything is written.

A row says what a file is (sha256, decodes, format, size, mode, channels, pixel mean and std), where it sits
(label folder, inside the dataset root or not) and, when it cannot be used, why (`error`). Headers are checked
against the pixel limit before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from components.data.images import SUFFIX_FORMATS, list_files

# Column names: one spelling everywhere.
PATH, SHA256, DECODES, ERROR, FORMAT, FORMAT_OK, WIDTH, HEIGHT, MODE, CHANNELS, LABEL, BYTES, MEAN, STD, INSIDE = (
    "path",
    "sha256",
    "decodes",
    "error",
    "format",
    "format_matches_suffix",
    "width",
    "height",
    "mode",
    "channels",
    "label",
    "bytes",
    "pixel_mean",
    "pixel_std",
    "inside_root",
)
COLUMNS = [PATH, SHA256, DECODES, ERROR, FORMAT, FORMAT_OK, WIDTH, HEIGHT, MODE, CHANNELS, LABEL, BYTES, MEAN, STD, INSIDE]
DEFAULT_MAX_PIXELS = 4096 * 4096


def inspect_file(root: Path, rel: Path, max_pixels: int = DEFAULT_MAX_PIXELS, resolved_dirs: dict | None = None) -> dict:
    """One manifest row for root/rel. `root` must be resolved; `resolved_dirs` caches resolved parent folders."""
    path = root / rel
    row: dict[str, Any] = {
        PATH: rel.as_posix(),
        SHA256: None,
        DECODES: False,
        ERROR: "",
        FORMAT: None,
        FORMAT_OK: False,
        WIDTH: None,
        HEIGHT: None,
        MODE: None,
        CHANNELS: None,
        LABEL: rel.parts[0] if len(rel.parts) > 1 else None,
        BYTES: 0,
        MEAN: None,
        STD: None,
        INSIDE: True,
    }
    try:
        # Only links can lead outside the root: resolve the file when it is one, and each folder once.
        cache = resolved_dirs if resolved_dirs is not None else {}
        parent = cache.get(path.parent) or cache.setdefault(path.parent, path.parent.resolve(strict=True))
        real = path.resolve(strict=True) if path.is_symlink() else parent / path.name
    except (OSError, RuntimeError) as e:
        row[ERROR] = f"unreadable ({type(e).__name__}: {e})"
        return row
    if not real.is_relative_to(root):
        row.update({INSIDE: False, ERROR: f"escapes the dataset root (points to {real})"})
        return row
    data = real.read_bytes()
    row.update({SHA256: hashlib.sha256(data).hexdigest(), BYTES: len(data)})
    if not data:
        row[ERROR] = "empty file (0 bytes)"
        return row
    try:
        with Image.open(real) as im:
            row.update({FORMAT: im.format, WIDTH: im.width, HEIGHT: im.height, MODE: im.mode, CHANNELS: len(im.getbands())})
            row[FORMAT_OK] = SUFFIX_FORMATS.get(real.suffix.lower()) == im.format
            if im.width * im.height > max_pixels:
                row[ERROR] = f"{im.width}x{im.height} is over the pixel limit of {max_pixels} (decompression bomb guard)"
                return row
            im.load()  # a truncated or corrupt file fails here, not at open
            pixels = np.asarray(im)
        row.update({DECODES: True, MEAN: float(pixels.mean()), STD: float(pixels.std())})
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        row[ERROR] = f"{type(e).__name__}: {e}"
    return row


def _inspect_chunk(args: tuple[str, list[str], int]) -> list[dict]:
    root, rels, max_pixels = args
    resolved = Path(root).resolve()
    dirs: dict = {}
    return [inspect_file(resolved, Path(rel), max_pixels, dirs) for rel in rels]


def build_manifest(root: Path, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None) -> pd.DataFrame:
    """A DataFrame with one row per file under `root` (hidden files skipped), sorted by path, built in parallel."""
    rels = [r.as_posix() for r in list_files(root)]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(rels) >= 2000:
        size = -(-len(rels) // (workers * 4))
        chunks = [(str(root), rels[i : i + size], max_pixels) for i in range(0, len(rels), size)]
        with ProcessPoolExecutor(workers) as pool:
            rows = [row for part in pool.map(_inspect_chunk, chunks) for row in part]
    else:
        rows = _inspect_chunk((str(root), rels, max_pixels))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({WIDTH: "Int64", HEIGHT: "Int64", CHANNELS: "Int64", DECODES: bool, FORMAT_OK: bool, INSIDE: bool})
