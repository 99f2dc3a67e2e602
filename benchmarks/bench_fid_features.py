"""Inception feature throughput (images/s): our FID Inception-v3 against the shipped TorchScript of the same
network, both fed the same preprocessed batches in this run. On a GPU, also the end-to-end time of a 50,000-sample
FID of a generator against cached reference statistics.

Usage: python benchmarks/bench_fid_features.py [--images 64] [--batch 32] [--device auto|cpu|cuda]
Ends with: RESULT fid_features ours=<img/s> reference=<img/s> ratio=<ours/reference> x
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from components.evaluation.inception import load_inception, preprocess, resolve_weights  # noqa: E402


def throughput(model, batches, device):
    with torch.no_grad():
        model(preprocess(batches[0].to(device)))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for b in batches:
            model(preprocess(b.to(device)))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def gpu_fid_50k(model, device, batch=500):
    """Generate 50,000 images from a DCGAN-64 generator and stream their features; the reference stats are cached."""
    from components.config import TrainConfig
    from components.core.pixels import to_uint8
    from components.training.networks import build_generator
    from components.evaluation.stats import StatsAccumulator
    from components.training.engine import model_spec

    generator = build_generator(model_spec(TrainConfig(z_dim=100, base_channels=512, extra_layers=0), 3, 64, 0)).to(device).eval()
    acc = StatsAccumulator()
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(50_000 // batch):
            images = to_uint8(generator(torch.randn(batch, 100, device=device)).float())
            acc.add(model(preprocess(images)).float().cpu().numpy())
    acc.stats()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    weights = resolve_weights(None, Path(".ganops/cache/inception"), allow_download=False)
    ours = load_inception(weights, device)
    reference = torch.jit.load(str(weights), map_location=device).eval()
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 256, (args.batch, 3, 64, 64), dtype=torch.uint8, generator=gen) for _ in range(max(1, args.images // args.batch))]
    ref = throughput(reference, batches, device)
    mine = throughput(ours, batches, device)
    print(f"device={device} batch={args.batch} images={sum(len(b) for b in batches)} (64x64 -> 299x299): "
          f"ours {mine:.1f} img/s, TorchScript {ref:.1f} img/s")
    if device.type == "cuda":
        print(f"50,000-sample FID features, end to end: {gpu_fid_50k(ours, device):.1f} s")
    print(f"RESULT fid_features ours={mine:.2f} reference={ref:.2f} ratio={mine / ref:.2f} x")


if __name__ == "__main__":
    main()
