"""Frechet distance at 2048 dimensions: ours (symmetric eigendecompositions) vs the scipy.linalg.sqrtm formula.

Usage: python benchmarks/bench_frechet.py [--dim 2048] [--repeats 3]
Ends with: RESULT frechet_2048 ours=<s> reference=<s> ratio=<reference/ours> x_faster
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from components.evaluation.frechet import frechet_distance  # noqa: E402


def reference(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def stats(rng, dim, n):
    x = rng.standard_normal((n, dim)) @ (rng.standard_normal((dim, dim)) / np.sqrt(dim)) + rng.standard_normal(dim)
    return x.mean(0), np.cov(x, rowvar=False)


def best_time(fn, repeats):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a, b = stats(rng, args.dim, args.samples), stats(rng, args.dim, args.samples)
    ours_s, ours = best_time(lambda: frechet_distance(*a, *b), args.repeats)
    ref_s, ref = best_time(lambda: reference(*a, *b), args.repeats)
    print(
        f"dim={args.dim} samples={args.samples}: ours {ours:.9f} in {ours_s:.3f} s, scipy sqrtm {ref:.9f} in {ref_s:.3f} s, "
        f"relative difference {abs(ours - ref) / abs(ref):.2e}"
    )
    print(f"RESULT frechet_{args.dim} ours={ours_s:.4f} reference={ref_s:.4f} ratio={ref_s / ours_s:.2f} x_faster")


if __name__ == "__main__":
    main()
