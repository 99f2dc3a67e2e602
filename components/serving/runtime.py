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
            "batching": self.batch_invariant,
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


def _golden_check(folder: Path, manifest: dict, forward: Forward, tolerance: float) -> bool:
    """Run the golden latents: refuse when the images differ from PyTorch's beyond the tolerance; return whether
    each latent gives bitwise the same image alone as in the batch (then requests may share forward passes)."""
    if GOLDEN not in manifest["files"]:
        return False  # an export from before golden samples: served one request per forward pass
    golden = load_safetensors(_verified_bytes(folder, GOLDEN, manifest))
    labels = golden.get("labels")
    together = forward(golden["z"], labels)
    diff = float(np.abs(together - golden["images"]).max()) if together.shape == golden["images"].shape else float("inf")
    if not diff <= tolerance:
        raise GanopsError(
            f"export {folder}: its golden latents give images {diff:.2e} away from PyTorch's (tolerance "
            f"{tolerance:g}); refusing to serve it"
        )
    alone = np.concatenate(
        [forward(golden["z"][i : i + 1], None if labels is None else labels[i : i + 1]) for i in range(len(golden["z"]))]
    )
    return bool(np.array_equal(alone, together))


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
    invariant = _golden_check(folder, manifest, forward, served_by.tolerance)
    return Served(folder, manifest, check["manifest_sha256"], runtime, forward, alias, invariant)


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
