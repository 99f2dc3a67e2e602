"""Training on a dataset larger than it is comfortable to hold in memory: 200,000 RGB 32x32 images.

1. `make_dataset.py` writes the photo patches (timed, all cores).
2. The decoded cache (data.cache) is built once: decode throughput in images/s.
3. `ganops train` runs as its own process for one epoch through the memory-mapped cache, then (the reference, same
   run) with --in-memory, which decodes the whole set into one array; each process's peak resident set is read
   from the OS (wait4's rusage of that child). Target: under 1.5 GB through the cache.
4. Steps/s on a small set (5,000 images), cache against in-memory, same config, the median of alternated runs
   (target: no slower).

Usage: python benchmarks/bench_data_scale.py [--count 200000] [--small 5000] [--steps-small 300] [--repeats 3]
Ends with: RESULT data_scale_rss ours=<MB, cache> reference=<MB, in memory> ratio=<ours/reference> peak_rss
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from components.core.processes import peak_rss_mb  # noqa: E402
from components.data.cache import cached_images  # noqa: E402

LABELS = ["china", "flower"]
SETTINGS = [
    "train.base_channels=32",
    "train.batch_size=128",
    "train.log_every=100",
    "train.sample_every=100000",
    "train.checkpoint_every=100000",
    "train.ema_decay=0.0",
    "validation.min_images=100",
]


def make(out: Path, count: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "make_dataset.py"), str(out), "--size", "32", "--count", str(count)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def train(data: Path, home: Path, steps: int, in_memory: bool) -> tuple[float, float]:
    """(peak RSS of the `ganops train` process in MB, its reported training seconds)."""
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "train",
        "-c",
        "rgb32",
        "--data",
        str(data),
        "--no-validate",
        "--max-steps",
        str(steps),
        "--out",
        str(home / "out"),
        "--set",
        *SETTINGS,
    ] + (["--in-memory"] if in_memory else [])
    peak_mb, stdout, stderr, code = peak_rss_mb(cmd, {**os.environ, "GANOPS_HOME": str(home)}, REPO)
    if code != 0:
        raise SystemExit(f"ganops train failed: {stderr[-2000:]}")
    shutil.rmtree(home / "out", ignore_errors=True)
    return peak_mb, float(re.search(r" in ([0-9.]+) s on ", stdout).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--steps-small", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of each path on the small set")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ganops-bench-data-"))
    try:
        big, small, home = work / "big", work / "small", work / "home"
        print(f"wrote {args.count:,} images in {make(big, args.count):.1f} s", flush=True)
        make(small, args.small)
        started = time.perf_counter()
        images, _ = cached_images(big, LABELS, home / "cache" / "images")
        build = time.perf_counter() - started
        size_mb = images.nbytes / 2**20
        del images
        print(
            f"cache build: {args.count / build:,.0f} images/s decoded ({build:.1f} s, {size_mb:.0f} MB uint8) on {os.cpu_count()} cores",
            flush=True,
        )
        epoch = args.count // 128
        cache_rss, _ = train(big, home, epoch, in_memory=False)
        print(f"one epoch ({epoch} steps) through the cache: peak RSS {cache_rss:,.0f} MB (target < 1536)", flush=True)
        memory_rss, _ = train(big, home, 20, in_memory=True)
        print(f"--in-memory, 20 steps: peak RSS {memory_rss:,.0f} MB", flush=True)
        # Alternated and repeated: on a shared 2-core machine one run's speed moves by 15% from one minute to the next.
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for in_memory in (False, True):
                times[in_memory].append(train(small, home, args.steps_small, in_memory=in_memory)[1])
        t_cache, t_mem = statistics.median(times[False]), statistics.median(times[True])
        print(
            f"{args.small:,} images, {args.steps_small} steps, median of {args.repeats} alternated runs: cache "
            f"{args.steps_small / t_cache:.1f} steps/s, in memory {args.steps_small / t_mem:.1f} steps/s (ratio "
            f"{t_mem / t_cache:.3f}; each run: cache {', '.join(f'{args.steps_small / t:.1f}' for t in times[False])}, "
            f"in memory {', '.join(f'{args.steps_small / t:.1f}' for t in times[True])})",
            flush=True,
        )
        print(f"RESULT data_scale_rss ours={cache_rss:.0f} reference={memory_rss:.0f} ratio={cache_rss / memory_rss:.3f} peak_rss_mb")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
