"""Training throughput, DCGAN 64x64, batch 128, synthetic data: the ganops engine against a plain
re-implementation of the classic PyTorch DCGAN example loop (fp32, eager, Sigmoid + BCELoss, separate real and
fake backward passes), both measured in this run on this machine.

Usage: python benchmarks/bench_train_dcgan.py [--steps 10] [--warmup 3] [--device auto|cpu|cuda] [--compile [--compile-mode M]] [--no-cuda-graphs]
       [--precision auto|fp32|bf16] [--memory-format auto|channels_last|contiguous] [--profile]
On CUDA it also prints the model FLOP utilisation (FLOPs counted with torch.utils.flop_counter).
Ends with: RESULT train_dcgan64 ours=<img/s> reference=<img/s> ratio=<ours/reference> x
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from components.config import TrainConfig  # noqa: E402
from components.training.engine import train_gan  # noqa: E402

NZ, NGF, NDF, NC, SIZE = 100, 64, 64, 3, 64
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense tensor-core peaks


def reference_models():
    """The classic example's networks, written out layer by layer."""
    G = nn.Sequential(
        nn.ConvTranspose2d(NZ, NGF * 8, 4, 1, 0, bias=False),
        nn.BatchNorm2d(NGF * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(NGF * 8, NGF * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(NGF * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(NGF * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False),
        nn.BatchNorm2d(NGF),
        nn.ReLU(True),
        nn.ConvTranspose2d(NGF, NC, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    D = nn.Sequential(
        nn.Conv2d(NC, NDF, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(NDF * 2),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(NDF * 2, NDF * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(NDF * 4),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(NDF * 4, NDF * 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(NDF * 8),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(NDF * 8, 1, 4, 1, 0, bias=False),
        nn.Sigmoid(),
    )
    return G, D


def reference_step_fn(device, batch):
    G, D = (m.to(device) for m in reference_models())
    criterion = nn.BCELoss()
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = torch.rand(1024, NC, SIZE, SIZE, device=device) * 2 - 1

    def step(i):
        real = data[(i * batch) % 1024 : (i * batch) % 1024 + batch] if batch <= 1024 else data
        D.zero_grad()
        out = D(real).view(-1)
        err_real = criterion(out, torch.ones_like(out))
        err_real.backward()
        fake = G(torch.randn(real.shape[0], NZ, 1, 1, device=device))
        out = D(fake.detach()).view(-1)
        err_fake = criterion(out, torch.zeros_like(out))
        err_fake.backward()
        opt_d.step()
        G.zero_grad()
        out = D(fake).view(-1)
        err_g = criterion(out, torch.ones_like(out))
        err_g.backward()
        opt_g.step()
        return err_g.item() + err_real.item() + err_fake.item()  # the example prints losses every step

    return step


def time_reference(device, batch, warmup, steps):
    step = reference_step_fn(device, batch)
    for i in range(warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    sync(device)
    return steps * batch / (time.perf_counter() - start)


class StepClock:
    """A progress object for train_gan that records when each step finished, syncing the device where measured."""

    def __init__(self, device, sync_at):
        self.device, self.sync_at, self.times = device, sync_at, []

    def update(self, n):
        if len(self.times) in self.sync_at:
            sync(self.device)
        self.times.append(time.perf_counter())

    def close(self):
        pass


def time_ours(device, batch, warmup, steps, args):
    images = np.random.default_rng(0).integers(0, 256, (1024, NC, SIZE, SIZE), dtype=np.uint8)
    # One step more than measured, so the end-of-run logging falls outside the timed window.
    cfg = TrainConfig(
        arch="dcgan",
        z_dim=NZ,
        base_channels=NGF * 8,
        extra_layers=0,
        batch_size=batch,
        steps=warmup + steps + 1,
        log_every=10_000,
        sample_every=10_000,
        device=device.type,
        compile=args.compile,
        compile_mode=args.compile_mode,
        cuda_graphs=not args.no_cuda_graphs,
        precision=args.precision,
        memory_format=args.memory_format,
        data_placement=args.data_placement,
    )
    clock = StepClock(device, sync_at=(warmup - 1, warmup + steps - 1))
    train_gan(images, None, cfg, seed=0, progress=lambda total, initial: clock)
    return steps * batch / (clock.times[warmup + steps - 1] - clock.times[warmup - 1])


def profile_ours(device, args):
    """The kernels of ours' step, eager (a CUDA graph shows as one launch): where the GPU time goes."""
    from torch.profiler import ProfilerActivity, profile

    args.no_cuda_graphs = True
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        time_ours(device, args.batch, args.warmup, args.steps, args)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_step(device, batch):
    from torch.utils.flop_counter import FlopCounterMode

    step = reference_step_fn(device, batch)
    with FlopCounterMode(display=False) as counter:
        step(0)
    return counter.get_total_flops()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default="default")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="ours: run the step eagerly instead of as one CUDA graph")
    parser.add_argument("--precision", default="auto", help="ours: auto = bf16 autocast on CUDA")
    parser.add_argument("--memory-format", default="auto", help="ours: auto = channels_last on CUDA")
    parser.add_argument("--data-placement", default="auto", help="ours: host = each batch staged through pinned memory")
    parser.add_argument(
        "--profile", action="store_true", help="instead of timing: ours' kernels over the steps, eager (a graph hides them)"
    )
    args = parser.parse_args()
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    )
    torch.manual_seed(0)
    if args.profile:
        return profile_ours(device, args)
    ref = time_reference(device, args.batch, args.warmup, args.steps)
    ours = time_ours(device, args.batch, args.warmup, args.steps, args)
    print(
        f"device={device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}) "
        f"batch={args.batch} steps={args.steps} precision={args.precision} memory_format={args.memory_format} "
        f"compile={args.compile_mode if args.compile else 'off'} cuda_graphs={not args.no_cuda_graphs} "
        f"data_placement={args.data_placement}: plain loop {ref:.1f} img/s, ganops {ours:.1f} img/s"
    )
    if device.type == "cuda":
        flops = flops_per_step(device, args.batch)
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
        if peak:
            print(
                f"MFU (bf16 peak {peak / 1e12:.0f} TFLOP/s): plain {flops * ref / args.batch / peak:.1%}, ganops {flops * ours / args.batch / peak:.1%}"
            )
    print(f"RESULT train_dcgan64 ours={ours:.2f} reference={ref:.2f} ratio={ours / ref:.2f} x")


if __name__ == "__main__":
    main()
