"""Training checkpoints: written atomically, loaded without unpickling, corrupt ones skipped.

A checkpoint is a dict of tensors and plain values (both models, both optimizers, the EMA, RNG states, the step,
the history and the resolved config) saved with torch.save and read back with `weights_only=True`, which refuses
anything but tensors and primitive containers. Writes go to a temporary name, are fsynced, then renamed, so a
crash (even SIGKILL) leaves either the old set of checkpoints or the new one, never a torn file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from components.core.atomic import replace_file

PATTERN = re.compile(r"^step_(\d{9})\.pt$")
REQUIRED = ("step", "G", "D", "opt_g", "opt_d", "rng", "torch_rng", "config")


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step_{step:09d}.pt"


def save_checkpoint(folder: Path, step: int, payload: dict, keep: int = 3) -> Path:
    """Write `payload` as the checkpoint of `step` atomically; keep the newest `keep` checkpoints."""
    final = checkpoint_path(folder, step)
    replace_file(lambda tmp: torch.save(payload, tmp), final, durable=True)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files in step order (temporary files excluded)."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: Path) -> dict:
    """Load one checkpoint safely; raises ValueError when it is unreadable or incomplete."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad magic, disallowed global: all mean "do not trust it"
        raise ValueError(f"{path.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    missing = [k for k in REQUIRED if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise ValueError(f"{path.name}: missing {', '.join(missing)}")
    return payload


def latest_valid(folder: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads; corrupt or truncated ones are skipped with a warning."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except ValueError as e:
            warnings.warn(f"skipping corrupt checkpoint {e}", RuntimeWarning, stacklevel=2)
    return None
