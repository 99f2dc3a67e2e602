"""Drift: a dataset's profile against the last version that passed validation, and the stored baselines."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from components.config import ValidationConfig
from components.core.atomic import write_text
from components.validation.manifest import CHANNELS, DECODES, HEIGHT, LABEL, MEAN, STD, WIDTH
from components.validation.results import DatasetProfile

LAST_PASSED = "last_passed.json"


def dataset_profile(manifest: pd.DataFrame, labels: list[str]) -> DatasetProfile:
    """Class fractions and pixel statistics of the decodable images, and their shape when they share one."""
    ok = manifest[manifest[DECODES]]
    counts = ok[LABEL].value_counts()
    total = max(int(counts.sum()), 1)
    shapes = {(int(c), int(h), int(w)) for c, h, w in zip(ok[CHANNELS], ok[HEIGHT], ok[WIDTH], strict=True)}
    return DatasetProfile(
        images=int(len(manifest)),
        class_fractions={label: float(counts.get(label, 0)) / total for label in labels},
        pixel_mean=float(ok[MEAN].mean()) if len(ok) else None,
        pixel_std=float(ok[STD].mean()) if len(ok) else None,
        image_shape=shapes.pop() if len(shapes) == 1 else None,
    )


def detect_drift(profile: DatasetProfile, baseline: dict | None, cfg: ValidationConfig) -> list[str]:
    """Findings where `profile` moved further from `baseline` than the configured tolerances (empty: no drift)."""
    if not baseline:
        return []
    findings = []
    for label, fraction in profile.class_fractions.items():
        before = baseline["class_fractions"].get(label, 0.0)
        if abs(fraction - before) > cfg.drift_class_tolerance:
            findings.append(f"class {label} fraction {before:.3f} -> {fraction:.3f} (tolerance {cfg.drift_class_tolerance})")
    for key in ("pixel_mean", "pixel_std"):
        now, before = getattr(profile, key), baseline.get(key)
        if now is not None and before is not None and abs(now - before) > cfg.drift_pixel_tolerance:
            findings.append(f"{key} {before:.2f} -> {now:.2f} (tolerance {cfg.drift_pixel_tolerance})")
    return findings


def read_baseline(folder: Path) -> dict | None:
    """The profile of the last version that passed, or None."""
    path = folder / LAST_PASSED
    return json.loads(path.read_text()) if path.is_file() else None


def store_baseline(folder: Path, dataset_md5: str, profile: DatasetProfile) -> None:
    """Keep a passing version's profile by md5 and as the baseline for the next version, each written atomically."""
    text = json.dumps({"md5": dataset_md5, **asdict(profile)}, indent=2)
    write_text(folder / f"{dataset_md5}.json", text)
    write_text(folder / LAST_PASSED, text)
