"""A verified export loaded for serving: the TorchScript or ONNX file only (no training code, nothing unpickled),
and the pure steps around its forward pass: latents from a seed, labels from names, images to bytes.

`load_served` checks every file of the export against its manifest before it loads anything and refuses, naming
the file, on any difference; it loads the bytes it hashed, and the golden latents must reproduce PyTorch's images.
The same seed gives the same latents on every runtime (numpy's PCG64, not torch's generator); TorchScript and ONNX
agree on the images to 1/255 after quantization, and each runtime gives the same bytes for the same request.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load as load_safetensors

from components.core.errors import GanopsError
from components.core.pixels import to_uint8
from components.serving.export import verify_export
from components.serving.formats import GOLDEN, MANIFEST, RUNTIMES, Forward
from components.training.pictures import grid


@dataclass(frozen=True)
class Served:
    """One loaded export: what `/v1/model` describes and what `/v1/generate` runs."""

    folder: Path
    manifest: dict
    manifest_sha256: str
    runtime: str
    forward: Forward = field(repr=False, compare=False)
    alias: str | None = None
    batch_invariant: bool = False  # a latent gives bitwise the same image alone as in a batch: batching is safe
    min_rows: int = 0  # else, when > 0: from this batch size on, a latent's image is the same bits: pad to it

    @property
    def model_name(self) -> str:
        return str(self.manifest["model_name"])

    @property
    def version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def z_dim(self) -> int:
        return int(self.manifest["input"]["z"][1])

    @property
    def labels(self) -> list[str]:
        """Class names in index order; empty for an unconditional generator."""
        if not self.manifest["input"].get("num_classes"):
            return []
        return [str(x) for x in self.manifest.get("labels") or range(self.manifest["input"]["num_classes"])]

    def signature(self) -> tuple:
        """What a request's schema depends on: a swap must keep it."""
        return self.z_dim, tuple(self.labels), tuple(self.manifest["output"]["images"])

    def describe(self) -> dict:
        return {
            "name": self.model_name,
            "version": self.version,
            "alias": self.alias,
            "runtime": self.runtime,
            "manifest_sha256": self.manifest_sha256,
            "labels": self.labels,
            "batching": self.batch_invariant or self.min_rows > 0,
            "min_batch_rows": self.min_rows or None,
            "input": self.manifest["input"],
            "output": self.manifest["output"],
            "lineage": self.manifest.get("lineage", {}),
        }


def _verified_bytes(folder: Path, name: str, manifest: dict) -> bytes:
    """The file's bytes, read once, and checked against the manifest (what is loaded is what was hashed)."""
    blob = (folder / name).read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest["files"][name]["sha256"]:
        raise GanopsError(f"export {folder}: {name} changed while it was being verified; refusing to serve it")
    return blob


def _golden_check(folder: Path, manifest: dict, forward: Forward, tolerance: float) -> tuple[bool, int]:
    """Run the golden latents: refuse when the images differ from PyTorch's beyond the tolerance. Return whether
    each latent gives bitwise the same image alone as in the batch (then requests may share forward passes of any
    size), and else the smallest batch size from which it does (`_min_rows`; 0 when none)."""
    if GOLDEN not in manifest["files"]:
        return False, 0  # an export from before golden samples: served one request per forward pass
    golden = load_safetensors(_verified_bytes(folder, GOLDEN, manifest))
    z, labels = golden["z"], golden.get("labels")
    together = forward(z, labels)
    diff = float(np.abs(together - golden["images"]).max()) if together.shape == golden["images"].shape else float("inf")
    if not diff <= tolerance:
        raise GanopsError(
            f"export {folder}: its golden latents give images {diff:.2e} away from PyTorch's (tolerance "
            f"{tolerance:g}); refusing to serve it"
        )
    alone = np.concatenate([forward(z[i : i + 1], None if labels is None else labels[i : i + 1]) for i in range(len(z))])
    if np.array_equal(alone, together):
        return True, 0
    return False, _min_rows(z, labels, forward, together)


def _min_rows(z: np.ndarray, labels: np.ndarray | None, forward: Forward, together: np.ndarray) -> int:
    """The smallest batch size m in 2, 4, 8 at which every golden latent, put among zeros at some position, gives
    bitwise its image from the golden batch, when the golden batch rolled and tiled four times gives them too
    (sizes m, 16 and 64 agree); 0 when none does. TorchScript's last convolution sums in another order at batch 1
    (4.7e-10 apart here) and in the same from 2 on."""
    rows = len(z)

    def run(rows_z: np.ndarray, rows_labels: np.ndarray | None) -> np.ndarray:
        return forward(rows_z, rows_labels)

    tiled = run(np.tile(z, (4, 1)), None if labels is None else np.tile(labels, 4))
    rolled = run(np.roll(z, rows // 2 + 1, 0), None if labels is None else np.roll(labels, rows // 2 + 1, 0))
    if not (np.array_equal(tiled, np.tile(together, (4, 1, 1, 1))) and np.array_equal(rolled, np.roll(together, rows // 2 + 1, 0))):
        return 0
    for size in (2, 4, 8):
        same = True
        for i in range(rows):
            at, padded = (i * 5 + 3) % size, np.zeros((size, z.shape[1]), z.dtype)
            padded[at] = z[i]
            padded_labels = None if labels is None else np.full(size, labels[i], labels.dtype)
            same = same and np.array_equal(run(padded, padded_labels)[at], together[i])
        if same:
            return size
    return 0


def load_served(folder: Path, runtime: str, alias: str | None = None, manifest_sha256: str | None = None) -> Served:
    """Verify the export at `folder`: its manifest against `manifest_sha256` (the one recorded on the registered
    version, when given), every file against the manifest, and the golden latents against PyTorch's images; then
    serve the runtime's file from the very bytes that were hashed. Raises GanopsError naming the folder or file
    that is missing, malformed or changed, before anything from it is loaded."""
    folder = Path(folder)
    if runtime not in RUNTIMES:
        raise GanopsError(f"--runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    check = verify_export(folder)
    manifest = check["manifest"]
    if manifest_sha256 and check["manifest_sha256"] != manifest_sha256:
        raise GanopsError(
            f"export {folder}: {MANIFEST} has sha256 {check['manifest_sha256'][:16]}..., not the "
            f"{manifest_sha256[:16]}... recorded on the model version; refusing to serve it"
        )
    bad = {name: state for name, state in check["files"].items() if state != "ok"}
    if bad:
        raise GanopsError(
            f"export {folder}: "
            + ", ".join(f"{name} is {state}" for name, state in bad.items())
            + f" (against the sha256 in {MANIFEST}); refusing to serve it"
        )
    served_by = RUNTIMES[runtime]
    name = served_by.file
    if name not in manifest["files"]:
        raise GanopsError(f"export {folder} has no {runtime} file ({name}) in its manifest; re-export it or choose another --runtime")
    forward = served_by.load(_verified_bytes(folder, name, manifest))
    invariant, min_rows = _golden_check(folder, manifest, forward, served_by.tolerance)
    return Served(folder, manifest, check["manifest_sha256"], runtime, forward, alias, invariant, min_rows)


def latents(seed: int, n: int, z_dim: int) -> np.ndarray:
    """Standard normal latents (n, z_dim) float32, a pure function of the seed (any runtime, any batch)."""
    return np.random.default_rng(seed).standard_normal((n, z_dim), dtype=np.float32)


def label_indices(served: Served, names: list[str] | None, n: int) -> np.ndarray | None:
    """Class indices for a conditional generator: the named classes, else every class in turn. Raises ValueError
    naming the unknown label (the API turns it into a 422)."""
    classes = served.labels
    if not classes:
        if names:
            raise ValueError(f"model {served.model_name} version {served.version} is unconditional: it takes no labels")
        return None
    if not names:
        return np.arange(n, dtype=np.int64) % len(classes)
    unknown = sorted({x for x in names if x not in classes})
    if unknown:
        raise ValueError(f"unknown class {unknown[0]!r}: model {served.model_name} knows {', '.join(classes)}")
    return np.array([classes.index(x) for x in names], dtype=np.int64)


def channels_last_uint8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, rounded as an 8-bit PNG writer would."""
    return to_uint8(torch.from_numpy(images)).numpy().transpose(0, 2, 3, 1)


def png_bytes(image: np.ndarray) -> bytes:
    """One (H, W, C) uint8 image as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def grid_png(images: np.ndarray) -> bytes:
    """(N, C, H, W) in [-1, 1] tiled into one PNG at their own size, as square as it goes."""
    return png_bytes(np.atleast_3d(grid(torch.from_numpy(images), scale=1)))


def npy_bytes(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, images, allow_pickle=False)
    return buffer.getvalue()
