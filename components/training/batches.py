"""Where the training images live and how each step's batch is drawn: indexed on the training device, or staged
from the host batch by batch; every rank draws the same global batch from one seeded generator and takes its share."""

from __future__ import annotations

import numpy as np
import torch

from components.config import TrainConfig
from components.core.errors import GanopsError
from components.core.pixels import to_unit_range
from components.training.state import TrainState


def stream_from_host(setting: str, device: torch.device, nbytes: int, free_bytes: int) -> bool:
    """Whether each batch is gathered on the host and copied to the device (True), or the whole uint8 set is put
    where training runs and indexed there. auto: on CUDA, stream when the set takes more than half the free memory."""
    if setting != "auto":
        return setting == "host"
    return device.type == "cuda" and nbytes > free_bytes // 2


class StagedRows:
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


class Batches:
    """The global batch every rank draws (same indices, latents and fake labels), sliced to this rank's share.

    The draws come from one generator on the training device whether the images sit there (indexed in place) or
    on the host (`staged`: rows gathered and copied per batch), so where the data lives does not change the run."""

    def __init__(
        self,
        state: TrainState,
        data: torch.Tensor | StagedRows,
        targets: torch.Tensor,
        batch: int,
        z_dim: int,
        classes: int,
        shard: slice,
        fmt,
        balanced: bool = False,
        augment_columns: int = 0,
    ):
        self.state, self.data, self.targets, self.batch, self.z_dim = state, data, targets, batch, z_dim
        self.augment_columns = augment_columns  # uniform numbers per image for the augmentation policy (augment.py)
        self.classes, self.shard, self.fmt, self.n = max(classes, 1), shard, fmt, len(targets)
        self.host_order: torch.Tensor | None = None
        self.order_seen: torch.Tensor | None = None
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
        staged = isinstance(self.data, StagedRows)
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
        if not staged:
            return s.order[window][self.shard], None
        if self.host_order is None or self.order_seen is not s.order:  # one host read per epoch (or after a resume)
            self.host_order, self.order_seen = s.order.cpu(), s.order
        return s.order[window][self.shard], self.host_order[window][self.shard]

    def next(self):
        s, device = self.state, self.targets.device
        idx, host_idx = self._indices()
        z = torch.randn(self.batch, self.z_dim, generator=s.rng, device=device)[self.shard]
        y_fake = torch.randint(self.classes, (self.batch,), generator=s.rng, device=device)[self.shard]
        # the augmentation's randomness, real images' columns then generated ones'; drawn only when augmenting, so a
        # run without augmentation draws exactly what it did before the option existed
        u = (
            torch.rand(self.batch, 2 * self.augment_columns, generator=s.rng, device=device)[self.shard]
            if self.augment_columns
            else torch.empty(len(z), 0, device=device)
        )
        rows = self.data(host_idx) if host_idx is not None else self.data[idx]
        real = to_unit_range(rows)  # uint8 kept; one batch made float at a time
        return real.contiguous(memory_format=self.fmt), self.targets[idx], z, y_fake, u


def place_data(
    images: np.ndarray, labels: np.ndarray | None, cfg: TrainConfig, device: torch.device, world: int
) -> tuple[torch.Tensor | StagedRows, torch.Tensor]:
    """(images as the loop indexes them, label indices on the device). uint8 as given: indexed where training runs (a
    memory-mapped cache stays on disk on CPU; on CUDA the set is copied to the device, a quarter of its float32
    size), or staged batch by batch from the host when it does not fit (train.data_placement)."""
    images = images.numpy() if isinstance(images, torch.Tensor) else images
    if labels is not None and len(labels) != len(images):
        raise GanopsError(f"{len(images)} images but {len(labels)} labels: every image needs one")
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
    data = (
        StagedRows(images, device, cfg.batch_size // world)
        if stream_from_host(cfg.data_placement, device, images.nbytes, free)
        else torch.from_numpy(images).to(device)
    )
    targets = (torch.from_numpy(np.asarray(labels)).long() if labels is not None else torch.zeros(len(images), dtype=torch.long)).to(device)
    return data, targets
