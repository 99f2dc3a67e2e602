"""Manifest building + GX validation throughput (images/s) on small PNGs, against a reference measured in the
same run: the plain serial loop a script would write (open, load, sha256 each file, one process).

Usage: python benchmarks/bench_manifest.py [--copies 12]   (the 1,797 digits, written `copies` times)
Ends with: RESULT manifest_validation ours=<img/s> reference=<img/s> ratio=<ours/reference> x
"""

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from components.config import ValidationConfig  # noqa: E402
from components.data.importers import digits_arrays  # noqa: E402
from components.data.png import encode_png  # noqa: E402
from components.validation.validate import validate_folder  # noqa: E402


def write_dataset(root: Path, copies: int) -> int:
    pixels, labels = digits_arrays()
    rng = np.random.default_rng(0)
    n = 0
    for c in range(copies):
        noisy = np.clip(pixels.astype(np.int16) + rng.integers(-2, 3, pixels.shape), 0, 255).astype(np.uint8) if c else pixels
        for i, (image, label) in enumerate(zip(noisy, labels, strict=True)):
            folder = root / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{c:02d}_{i:04d}.png").write_bytes(encode_png(image))
            n += 1
    return n


def reference(root: Path) -> int:
    count = 0
    for path in sorted(root.rglob("*.png")):
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        with Image.open(path) as im:
            im.load()
            np.asarray(im).mean()
        count += 1
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        n = write_dataset(root, args.copies)
        cfg = ValidationConfig(
            min_images=1, max_images=10**7, min_class_fraction=0.0, max_class_fraction=1.0, pixel_mean_range=(0, 255), min_pixel_std=0.0
        )
        validate_folder(root, cfg, state=Path(tmp) / "warm")  # warm the file cache and GX imports
        start = time.perf_counter()
        reference(root)
        ref = n / (time.perf_counter() - start)
        start = time.perf_counter()
        report = validate_folder(root, cfg, state=Path(tmp) / "state").to_dict()
        ours = n / (time.perf_counter() - start)
        assert not report["failures"] or report["failures"][0]["rule"] == "no duplicate image content", report["failures"]
    print(f"{n} PNGs: manifest + GX validation {ours:.0f} img/s; plain serial read+hash+decode (no validation) {ref:.0f} img/s")
    print(f"RESULT manifest_validation ours={ours:.1f} reference={ref:.1f} ratio={ours / ref:.2f} x")


if __name__ == "__main__":
    main()
