"""Do the GPU paths compute the same training? A DCGAN-64 trained for a few steps, deterministic algorithms on:
eager in one process (the reference), the CUDA-graph step in one process (the set on the device, and staged from
pinned host memory batch by batch), and DDP under torchrun (NCCL, one process per GPU, the global batch split over
them). Prints each one's largest weight difference from the reference.

Usage: python benchmarks/gpu_equivalence.py [--steps 20] [--nproc N (default: every GPU)] [--precision fp32|bf16]
On CPU it compares eager with DDP over gloo and two processes.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from components.config import TrainConfig  # noqa: E402
from components.training.engine import train_gan  # noqa: E402


def train(out: Path, steps: int, precision: str, graphs: bool, placement: str) -> None:
    torch.use_deterministic_algorithms(True, warn_only=True)
    images = np.random.default_rng(0).integers(0, 256, (1024, 3, 64, 64), dtype=np.uint8)
    cfg = TrainConfig(
        arch="dcgan",
        z_dim=100,
        base_channels=512,
        extra_layers=0,
        batch_size=128,
        steps=steps,
        log_every=steps,
        sample_every=10_000,
        precision=precision,
        cuda_graphs=graphs,
        data_placement=placement,
    )
    result = train_gan(images, None, cfg, seed=0)
    if int(os.environ.get("RANK", "0")) == 0:
        save_file({k: v.contiguous() for k, v in result.generator.state_dict().items()}, str(out))
        print(
            f"  {os.environ.get('WORLD_SIZE', '1')} process(es) on {result.device}, cuda_graphs={graphs}, data {placement}: {steps} steps in "
            f"{result.seconds:.1f} s, final loss_d {result.history['loss_d'][-1]:.4f} loss_g {result.history['loss_g'][-1]:.4f}",
            flush=True,
        )


def largest_difference(a: Path, b: Path) -> float:
    x, y = load_file(str(a)), load_file(str(b))
    return max((x[k].double() - y[k].double()).abs().max().item() for k in x)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--nproc", type=int, default=0)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--graphs", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--placement", default="device", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.out:  # a worker
        train(Path(args.out), args.steps, args.precision, args.graphs, args.placement)
        return
    cuda = torch.cuda.is_available()
    nproc = args.nproc or (torch.cuda.device_count() if cuda else 2)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    common = [__file__, "--steps", str(args.steps), "--precision", args.precision]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"eager": [sys.executable, *common], f"DDP ({nproc} process(es), {'nccl' if cuda else 'gloo'})": [*torchrun, *common]}
        if cuda:
            runs["CUDA graph"] = [sys.executable, *common, "--graphs"]
            runs["CUDA graph, batches staged from the host"] = [sys.executable, *common, "--graphs", "--placement", "host"]
        outs = {}
        for i, (name, cmd) in enumerate(runs.items()):
            outs[name] = Path(tmp) / f"{i}.safetensors"
            subprocess.run([*cmd, "--out", str(outs[name])], check=True)
        for name, path in list(outs.items())[1:]:
            diff = largest_difference(outs["eager"], path)
            print(
                f"{name} against eager, {args.precision}, {args.steps} steps: largest weight difference {diff:.3g}"
                f"{' (bitwise equal)' if diff == 0 else ''}"
            )


if __name__ == "__main__":
    main()
