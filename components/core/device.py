"""Device choice and torchrun's process layout, shared by training and evaluation."""

from __future__ import annotations

import os

import torch

from components.core.errors import GanopsError


def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) for a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU raises GanopsError."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise GanopsError("device 'cuda' was requested (train.device) but no CUDA device is available")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")
