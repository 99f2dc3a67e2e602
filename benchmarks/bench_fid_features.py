"""Inception feature throughput (images/s): our FID Inception-v3 against the shipped TorchScript of the same
network, both fed the same preprocessed batches in this run. On a GPU, also: how far our features are from the
TorchScript's in fp32 (TF32 off and on), and the end-to-end time of a 50,000-sample FID of a DCGAN-64 generator
against cached reference statistics (generate, resize, Inception, streamed statistics, Fréchet distance), for
fp32, TF32 and bf16 Inception, with each one's FID distance from the fp32 statistics.

Usage: python benchmarks/bench_fid_features.py [--images 64] [--batch 32] [--device auto|cpu|cuda]
                                               [--fid-samples 50000] [--fid-batch 500] [--end-to-end] [--product [--product-modes fp32,tf32]]
Ends with: RESULT fid_features ours=<img/s> reference=<img/s> ratio=<ours/reference> x
"""

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from components.evaluation.inception import load_inception, preprocess, resolve_weights  # noqa: E402


def throughput(model, batches, device):
    with torch.no_grad():
        model(preprocess(batches[0].to(device)))  # warm-up
        sync(device)
        start = time.perf_counter()
        for b in batches:
            model(preprocess(b.to(device)))
        sync(device)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def set_tf32(on: bool) -> None:
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def feature_agreement(ours, reference, device):
    """Largest |ours - TorchScript| over one batch of features, with TF32 off and on."""
    images = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = {}
    for tf32 in (False, True):
        set_tf32(tf32)
        with torch.no_grad():
            x = preprocess(images.to(device))
            out[tf32] = (ours(x) - reference(x)).abs().max().item()
    set_tf32(False)
    return out


def fid_end_to_end(model, device, samples, batch, mode, reference_stats, channels_last=False):
    """Seconds for a `samples`-image FID of a DCGAN-64 generator against reference statistics, and its stats."""
    from components.config import TrainConfig
    from components.core.pixels import to_uint8
    from components.evaluation.frechet import stats_to_fid
    from components.evaluation.stats import StatsAccumulator
    from components.training.networks import build_generator
    from components.training.state import model_spec

    torch.manual_seed(0)
    generator = build_generator(model_spec(TrainConfig(z_dim=100, base_channels=512, extra_layers=0), 3, 64, 0)).to(device).eval()
    set_tf32(mode == "tf32")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if mode == "bf16" else nullcontext()
    rng = torch.Generator(device=device).manual_seed(0)
    acc = StatsAccumulator()  # float64 on the device the features are on
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, samples, batch):
            z = torch.randn(min(batch, samples - i), 100, generator=rng, device=device)
            images = to_uint8(generator(z).float())
            x = preprocess(images)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with cast:
                acc.add(model(x).float())
        stats = acc.stats()
        fid = stats_to_fid(stats, reference_stats) if reference_stats is not None else 0.0
    seconds = time.perf_counter() - start
    set_tf32(False)
    model.to(memory_format=torch.contiguous_format)
    return seconds, stats, fid


def gpu_report(ours, reference, device, samples, batch):
    for mode, cl in (("fp32", False), ("fp32", True), ("tf32", False), ("tf32", True), ("bf16", True)):  # warm-up
        fid_end_to_end(ours, device, 2 * batch, batch, mode, None, channels_last=cl)
    diffs = feature_agreement(ours, reference, device)
    print(f"features, ours vs TorchScript, max |diff|: fp32 {diffs[False]:.3g}, TF32 {diffs[True]:.3g}")
    seconds, base, _ = fid_end_to_end(ours, device, samples, batch, "fp32", None)
    print(f"{samples:,}-sample FID end to end, fp32 Inception, batch {batch}: {seconds:.1f} s")
    for mode, cl in (("fp32", True), ("tf32", False), ("tf32", True), ("bf16", True)):
        seconds, _, fid = fid_end_to_end(ours, device, samples, batch, mode, base, channels_last=cl)
        print(
            f"{samples:,}-sample FID end to end, {mode}{' channels_last' if cl else ''}: {seconds:.1f} s "
            f"(FID between its statistics and fp32's: {fid:.4f})"
        )


def product_path(device, samples, batch, mode="fp32"):
    """The time of `ganops fid MODEL stats.npz` minus the registry: a DCGAN-64 generator file sampled through
    sources.source_stats (generation, Inception through InceptionExtractor in fp32 or, mode "tf32", TF32, and the
    float64 statistics all on the device), then the Frechet distance against reference statistics. Random Inception
    weights: the same arithmetic as the real ones, so the same time (their features say nothing: see gpu_report)."""
    import tempfile

    from components.config import TrainConfig
    from components.evaluation.extractors import TF32, InceptionExtractor
    from components.evaluation.fid_between import source_stats
    from components.evaluation.frechet import stats_to_fid
    from components.evaluation.inception import FIDInceptionV3
    from components.training.networks import build_generator
    from components.training.state import model_spec
    from components.training.weights import save_generator

    spec = model_spec(TrainConfig(z_dim=100, base_channels=512, extra_layers=0), 3, 64, 0)
    extractor = InceptionExtractor(FIDInceptionV3().to(device).eval(), device, batch, allow_tf32=mode == TF32)
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_generator(Path(tmp) / "g.safetensors", build_generator(spec).eval(), spec, {})
        source_stats("model", weights, extractor, 2 * batch, 0, 0)  # warm-up
        sync(device)
        start = time.perf_counter()
        stats, _ = source_stats("model", weights, extractor, samples, 0, 0)
        stats_to_fid(stats, stats)
        sync(device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fid-samples", type=int, default=50_000)
    parser.add_argument("--fid-batch", type=int, default=500)
    parser.add_argument("--end-to-end", action="store_true", help="also time the end-to-end FID off CUDA")
    parser.add_argument("--product", action="store_true", help="only time the product's own path (random weights)")
    parser.add_argument("--product-modes", default="fp32", help="with --product: comma-separated fp32|tf32")
    args = parser.parse_args()
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    )
    set_tf32(False)
    if args.product:
        for mode in args.product_modes.split(","):
            seconds = product_path(device, args.fid_samples, args.fid_batch, mode)
            print(f"{args.fid_samples:,}-sample FID through ganops' own path on {device}, batch {args.fid_batch}, {mode}: {seconds:.1f} s")
        return
    weights = resolve_weights(None, Path(".ganops/cache/inception"), allow_download=False)
    ours = load_inception(weights, device)
    reference = torch.jit.load(str(weights), map_location=device).eval()
    gen = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(0, 256, (args.batch, 3, 64, 64), dtype=torch.uint8, generator=gen) for _ in range(max(1, args.images // args.batch))
    ]
    ref = throughput(reference, batches, device)
    mine = throughput(ours, batches, device)
    print(
        f"device={device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}) "
        f"batch={args.batch} images={sum(len(b) for b in batches)} (64x64 -> 299x299, fp32): ours {mine:.1f} img/s, TorchScript {ref:.1f} img/s"
    )
    if device.type == "cuda" or args.end_to_end:
        gpu_report(ours, reference, device, args.fid_samples, args.fid_batch)
    print(f"RESULT fid_features ours={mine:.2f} reference={ref:.2f} ratio={mine / ref:.2f} x")


if __name__ == "__main__":
    main()
