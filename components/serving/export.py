"""Export for serving: TorchScript generator, safetensors weights, config, golden samples (serving.infra), and a
manifest of sha256 hashes.

Only a promoted generator is exported (the flow calls this after the gate). The folder is built under a
temporary name and renamed into place, so a reader never sees a half-written export.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from components.core.atomic import file_digest, replace_folder
from components.core.faults import DURING_EXPORT, fault_point
from components.serving.infra import GOLDEN, GOLDEN_TOLERANCE, InfraReport, infra_validate, write_golden
from components.training.weights import load_generator

MANIFEST = "manifest.json"
TORCHSCRIPT, WEIGHTS, CONFIG = "generator.torchscript.pt", "generator.safetensors", "config.json"


def sha256_of(path: Path) -> str:
    return file_digest(path, "sha256")


def export_dir_for(root: Path, model_name: str, version: str) -> Path:
    return root / model_name / f"v{version}"


def export_generator(weights: Path, root: Path, model_name: str, version: str, lineage: dict) -> Path:
    """Write the export folder for one model version and return it."""
    generator, spec, config = load_generator(weights)

    def build(tmp: Path) -> None:
        conditional = spec.conditional
        example = (torch.zeros(2, spec.z_dim),) + ((torch.zeros(2, dtype=torch.long),) if conditional else ())
        with warnings.catch_warnings():
            # torch 2.13 marks TorchScript deprecated; it is still the format serving stacks load without Python code.
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.trace(generator, example)
        scripted.save(str(tmp / TORCHSCRIPT))
        fault_point(DURING_EXPORT)
        shutil.copyfile(weights, tmp / WEIGHTS)
        (tmp / CONFIG).write_text(json.dumps({"generator": spec.to_dict(), "config": config}, indent=2, sort_keys=True))
        write_golden(generator, tmp / GOLDEN)
        files = {name: {"sha256": sha256_of(tmp / name), "bytes": (tmp / name).stat().st_size}
                 for name in (TORCHSCRIPT, WEIGHTS, CONFIG, GOLDEN)}
        manifest = {
            "model_name": model_name,
            "model_version": version,
            "generator": spec.to_dict(),
            "input": {"z": [None, spec.z_dim], "dtype": "float32", "distribution": "standard normal",
                      **({"labels": [None], "labels_dtype": "int64", "num_classes": spec.num_classes} if conditional else {})},
            "output": {"images": [None, *spec.image_shape], "range": [-1, 1]},
            "files": files,
            "golden": {"file": GOLDEN, "max_abs_diff": GOLDEN_TOLERANCE, "note": "z (and labels) in, PyTorch's images out"},
            "lineage": lineage,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))

    target = export_dir_for(root, model_name, version)
    replace_folder(build, target)
    return target


def verify_export(folder: Path) -> dict:
    """Recompute every file's hash against the manifest: {'ok': bool, 'files': {name: 'ok'|'mismatch'|'missing'}}."""
    manifest = json.loads((folder / MANIFEST).read_text())
    status = {}
    for name, entry in manifest["files"].items():
        path = folder / name
        status[name] = "missing" if not path.is_file() else ("ok" if sha256_of(path) == entry["sha256"] else "mismatch")
    return {"ok": all(v == "ok" for v in status.values()), "files": status, "manifest": manifest}


def infra_check(weights: Path) -> InfraReport:
    """Export the generator at `weights` to a temporary folder and prove it there in a fresh process (before the
    gate decides: the real export is written only for a version that becomes champion)."""
    with tempfile.TemporaryDirectory(prefix="ganops-infra-") as tmp:
        folder = export_generator(weights, Path(tmp), "candidate", "0", {})
        return infra_validate(folder, TORCHSCRIPT)
