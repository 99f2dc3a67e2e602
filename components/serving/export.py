"""Export for serving: the generator in every serving runtime's format (serving.formats: TorchScript, ONNX), its safetensors weights, config, golden samples
(serving.infra), and a manifest of sha256 hashes and sizes.

Only a promoted generator is exported (the flow calls this after the gate). The folder is built under a
temporary name and renamed into place, so a reader never sees a half-written export.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from components.core.atomic import file_digest, replace_folder
from components.core.errors import GanopsError
from components.core.faults import DURING_EXPORT, fault_point
from components.core.paths import SAFE_NAME
from components.serving.card import model_card
from components.serving.formats import CONFIG, GOLDEN, GOLDEN_TOLERANCE, MANIFEST, MODEL_CARD, RUNTIMES, SAMPLES, WEIGHTS
from components.serving.infra import InfraReport, infra_validate, write_golden
from components.training.pictures import save_grid
from components.training.weights import load_generator


def sha256_of(path: Path) -> str:
    return file_digest(path, "sha256")


def export_dir_for(root: Path, model_name: str, version: str) -> Path:
    return root / model_name / f"v{version}"


def class_names(config: dict, num_classes: int) -> list[str]:
    """The dataset's label names in index order (validation.labels of the training config), else the indices."""
    names = (config.get("validation") or {}).get("labels") or []
    return [str(x) for x in names] if len(names) == num_classes else [str(i) for i in range(num_classes)]


def export_generator(
    weights: Path,
    root: Path,
    model_name: str,
    version: str,
    lineage: dict,
    metrics: dict[str, float] | None = None,
    decision: dict | None = None,
) -> Path:
    """Write the export folder for one model version and return it: the generator in each runtime's format, its
    weights and config, golden samples, a model card (lineage, `metrics`, the gate's `decision`, a sample grid), and
    last the manifest hashing them all."""
    generator, spec, config = load_generator(weights)

    def build(tmp: Path) -> None:
        conditional = spec.conditional
        example = (torch.zeros(2, spec.z_dim),) + ((torch.zeros(2, dtype=torch.long),) if conditional else ())
        for runtime in RUNTIMES.values():
            runtime.write(generator, example, tmp / runtime.file)
        fault_point(DURING_EXPORT)
        shutil.copyfile(weights, tmp / WEIGHTS)
        (tmp / CONFIG).write_text(json.dumps({"generator": spec.to_dict(), "config": config}, indent=2, sort_keys=True))
        write_golden(generator, tmp / GOLDEN)
        save_grid(load_file(str(tmp / GOLDEN))["images"], tmp / SAMPLES)
        manifest = {
            "model_name": model_name,
            "model_version": version,
            "generator": spec.to_dict(),
            "input": {
                "z": [None, spec.z_dim],
                "dtype": "float32",
                "distribution": "standard normal",
                **({"labels": [None], "labels_dtype": "int64", "num_classes": spec.num_classes} if conditional else {}),
            },
            "output": {"images": [None, *spec.image_shape], "range": [-1, 1]},
            **({"labels": class_names(config, spec.num_classes)} if conditional else {}),
            "golden": {"file": GOLDEN, "max_abs_diff": GOLDEN_TOLERANCE, "note": "z (and labels) in, PyTorch's images out"},
            "lineage": lineage,
        }
        (tmp / MODEL_CARD).write_text(model_card(manifest, metrics or {}, decision, SAMPLES))
        manifest["files"] = {
            name: {"sha256": sha256_of(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in (*(r.file for r in RUNTIMES.values()), WEIGHTS, CONFIG, GOLDEN, SAMPLES, MODEL_CARD)
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))

    target = export_dir_for(root, model_name, version)
    replace_folder(build, target)
    return target


def parse_manifest(blob: bytes, where: str) -> dict:
    """A manifest's JSON, checked for the shape every reader relies on: `files` maps plain file names (no paths) to
    a sha256, and the model's name, version, input and output are there. Raises GanopsError naming `where`."""
    try:
        manifest = json.loads(blob)
    except (ValueError, UnicodeDecodeError) as e:
        raise GanopsError(f"{where} is not JSON ({e})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise GanopsError(f"{where} has no 'files' mapping of file names to hashes")
    for name, entry in files.items():
        if not SAFE_NAME.match(name) or name == MANIFEST:
            raise GanopsError(f"{where} lists {name!r}, which is not a plain file name of the export; refusing it")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise GanopsError(f"{where}: files.{name} has no sha256")
    for key in ("model_name", "model_version", "input", "output"):
        if key not in manifest:
            raise GanopsError(f"{where} has no {key!r}")
    return manifest


def verify_export(folder: Path) -> dict:
    """Recompute every file's hash against the manifest: {'ok': bool, 'files': {name: 'ok'|'changed'|'missing'},
    'manifest': the manifest, 'manifest_sha256': of the bytes checked against}. Raises GanopsError when the
    manifest is missing or malformed."""
    path = folder / MANIFEST
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise GanopsError(f"{folder} is not an export: cannot read its {MANIFEST} ({e.strerror})") from None
    manifest = parse_manifest(blob, str(path))
    status = {}
    for name, entry in manifest["files"].items():
        file = folder / name
        status[name] = "missing" if not file.is_file() else ("ok" if sha256_of(file) == entry["sha256"] else "changed")
    return {
        "ok": all(v == "ok" for v in status.values()),
        "files": status,
        "manifest": manifest,
        "manifest_sha256": hashlib.sha256(blob).hexdigest(),
    }


def manifest_digest(folder: Path) -> str:
    """The sha256 of the export's manifest, recorded on the version (tag ganops.export_manifest_sha256)."""
    return sha256_of(folder / MANIFEST)


def export_is_whole(folder: Path, manifest_sha256: str | None = None) -> bool:
    """Every file of a current-format export matches its manifest, and the manifest the recorded one (when given)."""
    try:
        check = verify_export(folder)
    except GanopsError:
        return False
    current = {GOLDEN, MODEL_CARD, *(r.file for r in RUNTIMES.values())} <= set(
        check["manifest"]["files"]
    )  # older exports lack some: rebuilt
    return check["ok"] and current and manifest_sha256 in (None, check["manifest_sha256"])  # the bytes just checked


def infra_check(weights: Path) -> InfraReport:
    """Export the generator at `weights` to a temporary folder and prove every runtime there in a fresh process
    (before the gate decides: the real export is written only for a version that becomes champion)."""
    with tempfile.TemporaryDirectory(prefix="ganops-infra-") as tmp:
        return infra_validate(export_generator(weights, Path(tmp), "candidate", "0", {}))
