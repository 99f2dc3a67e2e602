"""Device choice, torchrun's process layout and the host allocator's settings, shared by training and evaluation."""

from __future__ import annotations

import ctypes
import functools
import os
import sys

import torch

from components.core.errors import GanopsError

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt(3)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest on 64-bit
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc pairs with it when it raises the threshold itself


@functools.cache  # once per process: mallopt is not thread-safe, and the setting lasts
def keep_freed_host_memory() -> bool:
    """Have glibc serve blocks up to 32 MiB from its heap and keep what is freed there, for the whole process (each
    of its arenas may then hold up to 64 MiB freed, and blocks under 32 MiB go back to the OS only from a heap's top).

    A training step on CPU allocates and frees activation tensors of a few MiB each. glibc starts by giving every
    block over 128 KiB its own fresh mapping, so each step faults in and zeroes new pages, until some free of a large
    block happens to raise that threshold. Measured with `ganops train` on 2 cores (rgb32, 5,000 images): 16-18 steps/s
    against 24-26 with the threshold at 32 MiB, and whether a run was fast depended on what it had freed before (the
    in-memory path's decode did, the cache's did not). True where glibc took the setting (under a preloaded
    jemalloc or tcmalloc it is glibc's, unused)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


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
