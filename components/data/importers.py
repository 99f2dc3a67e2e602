"""Dataset sources for `ganops data import`: the bundled digits set, an ImageFolder, an .npz, or s3://bucket/prefix.

Each writes an ImageFolder (<dest>/<label>/<file>) and refuses bad input with a DataError naming the file and
the rule; `build_from_source` picks the writer. The digits PNGs come from our own encoder (`png.py`), so the
bytes are the same on every machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from components.core.errors import DataError
from components.core.names import SYNTHETIC_MANIFEST
from components.data.images import list_files
from components.data.intake import refusal, scan_source
from components.data.png import encode_png

DIGITS = "digits"


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as uint8 images (N, 8, 8) in 0..255 and integer labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # The set stores 0..16 ink levels; scale to the full 8-bit range with exact integer rounding.
    levels = bunch.images.astype(np.int64)
    pixels = ((levels * 255 + 8) // 16).astype(np.uint8)
    return pixels, bunch.target.astype(np.int64)


def write_digits(dest: Path) -> int:
    """Write the digits set as dest/<label>/<index:04d>.png. Returns the number of images."""
    pixels, labels = digits_arrays()
    for index, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        folder = dest / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:04d}.png").write_bytes(encode_png(image))
    return len(labels)


def copy_image_folder(source: Path, dest: Path) -> int:
    """Copy an ImageFolder tree (source/<label>/<file>) byte for byte, and its synthetic-data manifest when it has
    one. Returns the number of data files copied.

    Raises DataError when the source is missing, is not a folder, or holds no files, and one naming every entry the
    copy could not take as it is (`intake.scan_source`: links to folders or out of the source, hidden images).
    """
    if not source.exists():
        raise DataError(f"dataset folder {source} does not exist")
    if not source.is_dir():
        raise DataError(f"dataset source {source} is not a folder (expected <dir>/<label>/<image>)")
    bad = scan_source(source)
    if bad:
        raise refusal(str(source), bad)
    count = 0
    root = source.resolve()
    for rel in list_files(source):  # hidden files (.DS_Store, .git) are not data
        if not (source / rel).is_file():
            continue  # a dangling link
        if not (source / rel).resolve().is_relative_to(root):
            raise DataError(
                f"{source / rel} is a link to {(source / rel).resolve()}, outside the source folder {source}: "
                "copy the file in instead of linking it"
            )
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
        count += 1
    if count == 0:
        raise DataError(f"dataset folder {source} holds no files")
    if (source / SYNTHETIC_MANIFEST).is_file():  # a rebalanced folder's record of its synthetic files travels with it
        shutil.copyfile(source / SYNTHETIC_MANIFEST, dest / SYNTHETIC_MANIFEST)
    return count


def write_npz(source: Path, dest: Path) -> int:
    """Write an .npz with `x` (images) and `y` (labels) as dest/<label>/<index:05d>.png. Returns the count.

    x: uint8 (N, H, W) or (N, H, W, 1|3), or floating point in [0, 1]; y: N integer or string labels.
    Raises DataError naming the rule broken: missing arrays, mismatched lengths, NaN or out-of-range values.
    """
    if not source.is_file():
        raise DataError(f"{source} does not exist")
    try:
        with np.load(source, allow_pickle=False) as archive:
            if "x" not in archive or "y" not in archive:
                raise DataError(f"{source} must hold arrays 'x' (images) and 'y' (labels); found {', '.join(archive.files) or 'none'}")
            x, y = archive["x"], archive["y"]
    except (ValueError, OSError) as e:  # not an npz, or object arrays that would need unpickling
        raise DataError(f"{source} is not a readable .npz of plain arrays ({e})") from None
    if x.ndim == 0 or y.ndim == 0:
        raise DataError(f"{source}: x and y must be arrays with one entry per image, got shapes {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{source}: x holds {len(x)} images but y holds {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{source}: x holds no images")
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 3)):
        raise DataError(f"{source}: x has shape {x.shape}; expected (N, H, W) or (N, H, W, 3)")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            raise DataError(f"{source}: x holds NaN or infinite values (first at image {int(np.argwhere(bad)[0][0])})")
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{source}: floating-point x must lie in [0, 1], found [{x.min():g}, {x.max():g}]")
        x = np.round(x * 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"{source}: integer x must lie in [0, 255], found [{x.min()}, {x.max()}]")
        x = x.astype(np.uint8)
    for index, (image, label) in enumerate(zip(x, y, strict=True)):
        name = str(label.item() if hasattr(label, "item") else label)
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            raise DataError(
                f"{source}: label {name!r} of image {index} cannot be a folder name "
                "(empty, a path separator, a NUL byte, or a leading dot that would hide it)"
            )
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:05d}.png").write_bytes(encode_png(np.ascontiguousarray(image)))
    return len(x)


def copy_s3_prefix(url: str, dest: Path) -> int:
    """Download every object under s3://bucket/prefix to dest/<key below prefix>, through boto3.

    Credentials and the endpoint come from the standard AWS chain (AWS_* variables, profiles; AWS_ENDPOINT_URL
    for S3-compatible stores). Raises DataError for an empty prefix or a key that would escape `dest`.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise DataError(f"{url} names no bucket (expected s3://bucket/prefix)")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    s3 = boto3.client("s3")
    try:
        keys = sorted(
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if not obj["Key"].endswith("/")
        )
        if not keys:
            raise DataError(f"{url} holds no objects")
        for key in keys:
            rel = Path(key[len(prefix) :])
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise DataError(f"{url}: object key {key!r} would land outside the dataset folder")
            if any(part.startswith(".") for part in rel.parts):
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(dest / rel))
    except (BotoCoreError, ClientError) as e:
        raise DataError(f"{url}: {e}") from None
    return len(keys)


def build_from_source(source: str):
    """The folder builder for a `ganops data import` source: 'digits', an .npz, s3://bucket/prefix, or a folder."""
    if source == DIGITS:
        return write_digits
    if source.startswith("s3://"):
        return lambda tmp: copy_s3_prefix(source, tmp)
    path = Path(source).resolve()
    if path.suffix == ".npz":
        return lambda tmp: write_npz(path, tmp)
    return lambda tmp: copy_image_folder(path, tmp)
