"""Synthetic images in a dataset version, followed back to the generator that made them.

A rebalanced dataset carries `.synthetic.json` (components.synthesis): the method that added its images and why,
the generator's model, version, weights sha256 and training data md5, and every synthetic file's sha256. Only the
generated files (not SMOTE's interpolations, named synthetic-smote-*, nor repeated real files) are credited to the
generator: a set rebalanced by oversampling or SMOTE alone names no generator in its lineage. Imported with DVC, that manifest is part of the
dataset's md5, so it is read here from the DVC cache by md5 and checked against the dataset's own files and the
registry: a verification, not only a record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath

from components.core.names import GAN, SMOTE_PREFIX, SYNTHETIC_MANIFEST, SYNTHETIC_PREFIX, TAG_WEIGHTS_SHA256, TAG_WITHDRAWN

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"


def is_synthetic_member(relpath: str) -> bool:
    """The dataset's manifest of synthetic files, or a synthetic file (named synthetic-*)."""
    return relpath == SYNTHETIC_MANIFEST or PurePosixPath(relpath).name.startswith(SYNTHETIC_PREFIX)


def parse_record(blob: bytes | None) -> dict | None:
    """The synthetic manifest's JSON, or None when there is none or it lacks the shape every reader relies on (a
    `generator` object, `files` mapping names to sha256 strings, `classes` a list of objects)."""
    try:
        record = json.loads(blob) if blob is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("generator"), dict):
        return None
    files, classes = record.get("files", {}), record.get("classes", [])
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return None
    if not isinstance(classes, list) or not all(isinstance(c, dict) for c in classes):
        return None
    return record


def is_generated(relpath: str) -> bool:
    """Whether a file the manifest lists was made by the generator (SMOTE's are named synthetic-smote-*; repeated
    real files are listed apart, under `repeated`)."""
    return not PurePosixPath(relpath).name.startswith(SMOTE_PREFIX)


def summary(record: dict | None) -> dict | None:
    """What lineage shows: the method and why, the generator (when it made any of the images), the seed, and the
    added count per class (by kind, when the manifest records it)."""
    if record is None:
        return None
    classes = {str(c.get("label")): c["synthetic"] for c in record.get("classes", []) if c.get("synthetic")} or {
        str(k): v for k, v in (record.get("counts") or {}).items()
    }  # a `ganops generate` folder
    generated = sum(1 for rel in record.get("files", {}) if is_generated(rel))
    return {
        "method": record.get("method", GAN),  # manifests from before the methods were all generated images
        "reason": record.get("reason"),
        "generator": record.get("generator", {}) if generated else None,
        "seed": record.get("seed"),
        "files": len(record.get("files", {})),
        "generated": generated,
        "repeated": len(record.get("repeated") or {}),
        "classes": classes,
        "added": record.get("added"),
        "quality_passed": (record.get("quality") or {}).get("passed"),
    }


def check_synthetic(record: dict | None, members: dict[str, bytes], generator_tags: dict | None) -> tuple[str, str]:
    """(status, evidence) for a dataset's synthetic images: every listed file present with its sha256, no unlisted
    synthetic file, and the generator's version in the registry with the recorded weights (pure)."""
    synthetic = {rel for rel in members if rel != SYNTHETIC_MANIFEST}
    if record is None:
        if synthetic:
            return FAIL, f"{sorted(synthetic)[0]} is named as synthetic, but the dataset has no {SYNTHETIC_MANIFEST} naming its generator"
        return SKIP, "the dataset holds no synthetic images"
    files = record.get("files") or {}
    for rel, sha in sorted(files.items()):
        if rel not in members:
            return FAIL, f"{rel}, listed in {SYNTHETIC_MANIFEST}, is not in the dataset"
        if hashlib.sha256(members[rel]).hexdigest() != sha:
            return FAIL, f"{rel} does not hash to the sha256 in {SYNTHETIC_MANIFEST}"
    unlisted = sorted(synthetic - set(files))
    if unlisted:
        return FAIL, f"{unlisted[0]} is named as synthetic but not listed in {SYNTHETIC_MANIFEST}"
    generated = sum(1 for rel in files if is_generated(rel))
    if not generated:
        return PASS, (
            f"{len(files)} SMOTE files match {SYNTHETIC_MANIFEST} (method {record.get('method')}); no generated image, so no "
            f"generator is credited"
        )
    g = record.get("generator") or {}
    who = f"{g.get('model')} version {g.get('version')}"
    if generator_tags is None:
        return FAIL, f"the generator {who} is not in the registry"
    if generator_tags.get(TAG_WEIGHTS_SHA256) != g.get("weights_sha256"):
        return (
            FAIL,
            f"the generator {who} now has weights sha256 {generator_tags.get(TAG_WEIGHTS_SHA256)}, not the recorded {g.get('weights_sha256')}",
        )
    evidence = (
        f"{len(files)} synthetic files match {SYNTHETIC_MANIFEST}; the {generated} generated ones made by {who} (weights sha256 verified), "
        f"trained on dataset {g.get('generator_dataset_md5')}"
    )
    if generator_tags.get(TAG_WITHDRAWN):
        return WARN, f"{evidence}; but that generator was withdrawn: {generator_tags[TAG_WITHDRAWN]}"
    return PASS, evidence


def format_origin(origin: dict | None) -> str | None:
    """The lines lineage prints for a dataset with added images: what was added, by which method and why, and the
    generator behind the generated ones."""
    if origin is None:
        return None
    added = origin.get("added") or {}
    classes = ", ".join(
        f"{label}: {n}" + (f" ({', '.join(f'{kind} {k}' for kind, k in added[label].items())})" if label in added else "")
        for label, n in origin["classes"].items()
    )
    method = origin.get("method", GAN)
    lines = [f"  -> added images ({classes}) by {method}" + (f": {origin['reason']}" if origin.get("reason") else "")]
    g = origin.get("generator")
    if g:
        lines.append(
            f"  -> {origin.get('generated', origin['files'])} generated by {g.get('model')} version {g.get('version')} "
            f"(weights sha256 {str(g.get('weights_sha256'))[:12]}..., seed {origin['seed']}), itself trained on dataset "
            f"{g.get('generator_dataset_md5')}: ganops lineage {g.get('model')}@{g.get('version')}"
        )
    return "\n".join(lines)
