"""Write a deterministic RGB ImageFolder for the realistic presets and the benchmarks: patches of the two photos
scikit-learn ships (`photos`: labels china and flower) or drawn shapes (`shapes`: circle, square, triangle). The
same arguments give the same bytes (seeded crops, PIL's resize, ganops' own PNG encoder); built on every core.

Usage: python benchmarks/make_dataset.py OUT [--size 32] [--count 2000] [--kind photos|shapes] [--seed 0] [--workers N]
Then:  ganops data import OUT && ganops run -c rgb32    (or rgb64 with --size 64)
"""

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from components.data.png import encode_png  # noqa: E402

PHOTOS, SHAPES = ("china", "flower"), ("circle", "square", "triangle")
CHUNK = 2000


def photo_patch(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (size to 4 x size pixels wide, maybe mirrored) resized to size x size."""
    side = int(rng.integers(size, min(4 * size, *photo.shape[:2]) + 1))
    top, left = int(rng.integers(0, photo.shape[0] - side + 1)), int(rng.integers(0, photo.shape[1] - side + 1))
    crop = photo[top : top + side, left : left + side]
    crop = crop[:, ::-1] if rng.random() < 0.5 else crop
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR))


def shape_image(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A filled shape of a random colour, position and scale on a random background colour, with a little noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
    if kind == "circle":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    elif kind == "square":
        mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    else:
        mask = (yy >= cy - r) & (yy <= cy + r) & (abs(xx - cx) <= (yy - (cy - r)) / 2)
    image = np.empty((size, size, 3))
    image[:] = rng.uniform(0, 255, 3)
    image[mask] = rng.uniform(0, 255, 3)
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def write_chunk(task: tuple) -> int:
    out, kind, size, seed, start, stop = task
    labels = PHOTOS if kind == "photos" else SHAPES
    photos = None
    if kind == "photos":
        from sklearn.datasets import load_sample_images

        photos = dict(zip(PHOTOS, load_sample_images().images, strict=True))
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])  # image i depends on the seed and i only: any worker, any chunking
        label = labels[i % len(labels)]
        image = photo_patch(photos[label], size, rng) if photos else shape_image(label, size, rng)
        (Path(out) / label / f"{i:07d}.png").write_bytes(encode_png(image))
    return stop - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--kind", choices=["photos", "shapes"], default="photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.size < 8 or args.size > 256 or args.count < 1:
        parser.error("--size must lie in 8..256 and --count be positive")
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} exists and is not empty")
    for label in PHOTOS if args.kind == "photos" else SHAPES:
        (args.out / label).mkdir(parents=True, exist_ok=True)
    tasks = [(str(args.out), args.kind, args.size, args.seed, s, min(s + CHUNK, args.count)) for s in range(0, args.count, CHUNK)]
    with ProcessPoolExecutor(args.workers) as pool:
        written = sum(pool.map(write_chunk, tasks))
    print(f"wrote {written} {args.size}x{args.size} RGB images ({args.kind}) to {args.out}")


if __name__ == "__main__":
    main()
