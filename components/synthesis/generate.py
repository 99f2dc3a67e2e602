"""`ganops generate`: images of a verified export, written as an ImageFolder (or one .npz) with a manifest.

The generator is the export's TorchScript file, loaded only after every file matched the manifest (serving.runtime).
Latents come from numpy's PCG64 seeded with (seed, class index), so a class's images depend only on the seed, the
class and the count: the same command gives the same bytes, and asking for one more class changes no other.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.core.atomic import bytes_digest, json_bytes, replace_folder
from components.core.errors import GanopsError
from components.core.names import SYNTHETIC_MANIFEST, TAG_DATASET_MD5
from components.serving.formats import WEIGHTS
from components.data.png import encode_png
from components.serving.runtime import Served, channels_last_uint8

MAX_IMAGES = 1_000_000  # per class (or in all, unconditional): a typo of a few zeros is refused, not run for days
CHUNK = 256  # images per forward pass: memory stays bounded and the bytes do not depend on N
FORMATS = ("png", "npz")
NPZ_NAME = "images.npz"


@dataclass(frozen=True)
class Request:
    """What to generate: `counts` maps each label to its number of images (the label "" for an unconditional model)."""

    counts: dict[str, int]
    seed: int
    prefix: str = ""  # before each file's index: rebalancing marks synthetic files by name


@dataclass(frozen=True)
class Generated:
    """What was written: per-label file names relative to the output, each file's sha256, and where the manifest is."""

    out: Path
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    manifest: dict = field(default_factory=dict)


def plan_request(served: Served, n: int, classes: list[str] | None, seed: int, prefix: str = "") -> Request:
    """N images of each named class (every class of a conditional model when none is named), or N in all for an
    unconditional one. Raises GanopsError naming the bad class, the unconditional model or the bad N."""
    if not 1 <= n <= MAX_IMAGES:
        raise GanopsError(f"-n {n} is out of bounds: ask for 1 to {MAX_IMAGES:,} images")
    if not 0 <= seed < 2**63:
        raise GanopsError(f"--seed {seed} is out of bounds: 0 to 2^63-1")
    known = served.labels
    if classes and not known:
        raise GanopsError(f"{served.model_name} version {served.version} is unconditional: it takes no --class")
    unknown = [c for c in classes or [] if c not in known]
    if unknown:
        raise GanopsError(f"class {unknown[0]!r} is not one {served.model_name} version {served.version} generates; "
                          f"it knows {', '.join(known)}")
    labels = list(dict.fromkeys(classes)) if classes else known or [""]
    return Request({label: n for label in labels}, seed, prefix)


def require_conditional(served: Served) -> list[str]:
    """The class names of a conditional generator; GanopsError for an unconditional one (it cannot rebalance)."""
    if not served.labels:
        raise GanopsError(f"{served.model_name} version {served.version} is unconditional: it cannot make images of a "
                          "chosen class, so it cannot rebalance (train a cdcgan, e.g. `ganops run -c cdcgan`)")
    return served.labels


def class_latents(seed: int, class_index: int, n: int, z_dim: int) -> np.ndarray:
    """Standard normal float32 latents (n, z_dim) of one class: a pure function of (seed, class index, n)."""
    return np.random.default_rng([seed, class_index]).standard_normal((n, z_dim), dtype=np.float32)


def images_of(served: Served, label: str, n: int, seed: int, progress=None) -> np.ndarray:
    """n images (N, H, W, C) uint8 of `label` ("" unconditional), CHUNK latents per forward pass (each one
    reported to `progress.update`)."""
    index = served.labels.index(label) if label else 0
    z = class_latents(seed, index, n, served.z_dim)
    out = []
    for start in range(0, n, CHUNK):
        chunk = z[start:start + CHUNK]
        labels = np.full(len(chunk), index, dtype=np.int64) if label else None
        out.append(channels_last_uint8(served.forward(chunk, labels)))
        if progress is not None:
            progress.update(len(chunk))
    return np.concatenate(out)


def file_name(prefix: str, i: int) -> str:
    return f"{prefix}{i:05d}.png"


def source_record(served: Served) -> dict:
    """Who made the images: model, version, the export's manifest and weights hashes, the generator's training data."""
    manifest = served.manifest
    return {"model": served.model_name, "version": served.version, "export_manifest_sha256": served.manifest_sha256,
            "weights_sha256": manifest["files"].get(WEIGHTS, {}).get("sha256"),
            "generator_dataset_md5": (manifest.get("lineage") or {}).get(TAG_DATASET_MD5)}


def write_images(served: Served, request: Request, out: Path, fmt: str = "png", progress=None) -> dict[str, str]:
    """Write the request's images under `out` (png: <label>/<prefix><i>.png; npz: one images.npz with x and y).
    Returns {relative path: sha256}. `progress` (core.progress) advances by each chunk of images."""
    files: dict[str, str] = {}
    xs, ys = [], []
    for label, n in request.counts.items():
        images = images_of(served, label, n, request.seed, progress)
        if fmt == "npz":
            xs.append(images)
            ys += [label] * n
        else:
            folder = out / label if label else out
            folder.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                blob = encode_png(image[..., 0] if image.shape[-1] == 1 else image)  # the same bytes on every machine
                name = file_name(request.prefix, i)
                (folder / name).write_bytes(blob)
                files[f"{label}/{name}" if label else name] = bytes_digest(blob)
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, x=np.concatenate(xs), y=np.asarray(ys, dtype=str))
        (out / NPZ_NAME).write_bytes(buffer.getvalue())
        files[NPZ_NAME] = bytes_digest(buffer.getvalue())
    return files


def check_output(out: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder without --force (nothing is touched)."""
    if out.exists() and not out.is_dir():
        raise GanopsError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise GanopsError(f"--out {out} exists and is not empty; pass --force to replace it")


def generate(served: Served, request: Request, out: Path, fmt: str = "png", force: bool = False, progress=None) -> Generated:
    """Write the images and their manifest (model, version, hashes, seed, labels, each file's sha256) into `out`,
    built under a temporary name and renamed into place: a killed run leaves the old folder or none."""
    if fmt not in FORMATS:
        raise GanopsError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    check_output(out, force)
    manifest: dict = {}

    def build(tmp: Path) -> dict[str, str]:
        files = write_images(served, request, tmp, fmt, progress)
        manifest.update({"generator": source_record(served), "seed": request.seed, "counts": request.counts,
                         "format": fmt, "files": files})
        (tmp / SYNTHETIC_MANIFEST).write_bytes(json_bytes(manifest))
        return files

    files = replace_folder(build, out)
    return Generated(out, files, manifest)
