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
from components.core.paths import check_path_name
from components.data.png import encode_png
from components.serving.formats import WEIGHTS
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
        raise GanopsError(
            f"class {unknown[0]!r} is not one {served.model_name} version {served.version} generates; it knows {', '.join(known)}"
        )
    labels = list(dict.fromkeys(classes)) if classes else known or [""]
    return Request({label: n for label in labels}, seed, prefix)


def require_conditional(served: Served) -> list[str]:
    """The class names of a conditional generator; GanopsError for an unconditional one (it cannot rebalance)."""
    if not served.labels:
        raise GanopsError(
            f"{served.model_name} version {served.version} is unconditional: it cannot make images of a "
            "chosen class, so it cannot rebalance (train a cdcgan, e.g. `ganops run -c cdcgan`)"
        )
    return served.labels


def latent_chunks(seed: int, class_index: int, n: int, z_dim: int):
    """Standard normal float32 latents of one class, CHUNK rows at a time from one stream seeded with (seed, class
    index): together a pure function of (seed, class index, n), the same as one draw of n rows."""
    rng = np.random.default_rng([seed, class_index])
    for start in range(0, n, CHUNK):
        yield rng.standard_normal((min(CHUNK, n - start), z_dim), dtype=np.float32)


def class_latents(seed: int, class_index: int, n: int, z_dim: int) -> np.ndarray:
    return np.concatenate(list(latent_chunks(seed, class_index, n, z_dim)))


def image_chunks(served: Served, label: str, n: int, seed: int, progress=None):
    """n images of `label` ("" unconditional) as uint8 (N, H, W, C) chunks of CHUNK, drawn from one latent stream per
    (seed, class) chunk by chunk (the same values as one draw): memory stays bounded whatever n is."""
    index = served.labels.index(label) if label else 0
    for z in latent_chunks(seed, index, n, served.z_dim):
        labels = np.full(len(z), index, dtype=np.int64) if label else None
        yield channels_last_uint8(served.forward(z, labels))
        if progress is not None:
            progress.update(len(z))


def images_of(served: Served, label: str, n: int, seed: int, progress=None) -> np.ndarray:
    """All n images of `label` at once (the quality check's samples; an npz)."""
    return np.concatenate(list(image_chunks(served, label, n, seed, progress)))


def file_name(prefix: str, i: int) -> str:
    return f"{prefix}{i:05d}.png"


def source_record(served: Served) -> dict:
    """Who made the images: model, version, the export's manifest and weights hashes, the generator's training data."""
    manifest = served.manifest
    return {
        "model": served.model_name,
        "version": served.version,
        "export_manifest_sha256": served.manifest_sha256,
        "weights_sha256": manifest["files"].get(WEIGHTS, {}).get("sha256"),
        "generator_dataset_md5": (manifest.get("lineage") or {}).get(TAG_DATASET_MD5),
    }


def write_images(served: Served, request: Request, out: Path, fmt: str = "png", progress=None) -> dict[str, str]:
    """Write the request's images under `out` (png: <label>/<prefix><i>.png, chunk by chunk; npz: one images.npz
    with x and y). Returns {relative path: sha256}. `progress` (core.progress) advances by each chunk of images."""
    require_safe_names(served)
    files: dict[str, str] = {}
    xs, ys = [], []
    for label, n in request.counts.items():
        if fmt == "npz":
            xs.append(images_of(served, label, n, request.seed, progress))
            ys += [label] * n
            continue
        folder = out / label if label else out
        folder.mkdir(parents=True, exist_ok=True)
        i = 0
        for chunk in image_chunks(served, label, n, request.seed, progress):
            for image in chunk:
                blob = encode_png(image[..., 0] if image.shape[-1] == 1 else image)  # the same bytes on every machine
                name = file_name(request.prefix, i)
                (folder / name).write_bytes(blob)
                files[f"{label}/{name}" if label else name] = bytes_digest(blob)
                i += 1
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, x=np.concatenate(xs), y=np.asarray(ys, dtype=str))
        (out / NPZ_NAME).write_bytes(buffer.getvalue())
        files[NPZ_NAME] = bytes_digest(buffer.getvalue())
    return files


def require_safe_names(served: Served) -> None:
    """Class names and the version become file and folder names: each must be one plain name (an export's manifest
    is only checked against itself when it comes from a folder or S3)."""
    for label in served.labels:
        check_path_name(label, f"class name of {served.model_name} version {served.version}")
    check_path_name(served.version, f"version of {served.model_name}")


def check_output(out: Path, force: bool, data: Path | None = None) -> None:
    """Refuse a file; a folder that overlaps `data` or holds the working directory; and a non-empty folder, unless
    --force and it holds .synthetic.json (one ganops wrote before). Nothing is touched."""
    if out.exists() and not out.is_dir():
        raise GanopsError(f"--out {out} is a file, not a folder")
    resolved = out.resolve()
    if data is not None and (data.resolve().is_relative_to(resolved) or resolved.is_relative_to(data.resolve())):
        raise GanopsError(f"--out {out} and --data {data} overlap: the real data would be replaced or mixed with the output")
    if Path.cwd().resolve().is_relative_to(resolved):
        raise GanopsError(f"--out {out} holds the working directory; choose a folder of its own")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise GanopsError(f"--out {out} exists and is not empty; pass --force to replace it")
        if not (out / SYNTHETIC_MANIFEST).is_file():
            raise GanopsError(
                f"--out {out} is not a folder ganops wrote (it has no {SYNTHETIC_MANIFEST}); "
                "--force replaces only those: choose another --out"
            )


def generate(served: Served, request: Request, out: Path, fmt: str = "png", force: bool = False, progress=None) -> Generated:
    """Write the images and their manifest (model, version, hashes, seed, labels, each file's sha256) into `out`,
    built under a temporary name and renamed into place: a killed run leaves the old folder or none."""
    if fmt not in FORMATS:
        raise GanopsError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    check_output(out, force)
    manifest: dict = {}

    def build(tmp: Path) -> dict[str, str]:
        files = write_images(served, request, tmp, fmt, progress)
        manifest.update({"generator": source_record(served), "seed": request.seed, "counts": request.counts, "format": fmt, "files": files})
        (tmp / SYNTHETIC_MANIFEST).write_bytes(json_bytes(manifest))
        return files

    files = replace_folder(build, out)
    return Generated(out, files, manifest)
