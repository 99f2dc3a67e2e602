"""Many GPUs (or CPU processes) through torchrun and DistributedDataParallel: gloo on CPU, NCCL on GPUs."""

from __future__ import annotations

import torch

from components.training.state import TrainState


def distribute(state: TrainState, device: torch.device, local_rank: int) -> None:
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
