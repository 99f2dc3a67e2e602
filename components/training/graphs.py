"""The training step as one CUDA graph: when it is used, the capture and replay, and the runner that picks eager or
graphed execution for the loop."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch

from components.config import TrainConfig
from components.training.state import TrainState
from components.training.step import train_step


def graphs_enabled(cfg: TrainConfig, device: torch.device, world: int) -> bool:
    """Whether the step runs as one CUDA graph: on CUDA, in one process (NCCL inside a graph needs more care than
    it pays), and not under torch.compile (whose own cudagraphs would nest)."""
    return cfg.cuda_graphs and device.type == "cuda" and world == 1 and not cfg.compile


class GraphedStep:
    """The whole training step captured once as a CUDA graph and replayed, each step's batches copied into its
    static inputs: one launch per step instead of several hundred small kernels (a DCGAN at batch 128 is bound by
    launches, not by arithmetic). The first WARMUP steps run eagerly on a side stream, as capture requires."""

    WARMUP = 3

    def __init__(self, run: Callable[[list[tuple]], torch.Tensor]):
        self.run, self.calls = run, 0
        # after capture: the graph, its static inputs (one tuple of tensors per draw) and its static output
        self.captured: tuple[torch.cuda.CUDAGraph, list[tuple], torch.Tensor] | None = None

    def __call__(self, draws: list[tuple]) -> torch.Tensor:
        if self.captured is None and self.calls < self.WARMUP:
            self.calls += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.run(draws)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.captured is None:
            inputs = [tuple(t.clone() for t in draw) for draw in draws]
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = self.run(inputs)
            self.captured = (graph, inputs, output)
        else:
            graph, inputs, output = self.captured
            for static, draw in zip(inputs, draws, strict=True):
                for dst, src in zip(static, draw, strict=True):
                    dst.copy_(src)
        graph.replay()
        return output


def step_runner(state: TrainState, cfg: TrainConfig, nets, bf16: bool, device: torch.device, conditional: bool, graphs: bool):
    """draws -> the step's tracked values: eager, or through a CUDA graph (autocast's weight cache off, as capture needs)."""
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not graphs)) if bf16 else nullcontext

    def run(draws: list[tuple]) -> torch.Tensor:
        return train_step(state, cfg, draws, nets, autocast, conditional)

    return GraphedStep(run) if graphs else run
