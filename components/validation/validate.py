"""Validate a dataset folder: manifest -> GX suite -> drift against the last passed version -> a ValidationReport."""

from __future__ import annotations

from pathlib import Path

from components.config import ValidationConfig
from components.core.errors import ValidationFailed
from components.validation.drift import dataset_profile, detect_drift, read_baseline, store_baseline
from components.validation.manifest import build_manifest
from components.validation.results import Drift, RuleFailure, ValidationReport, format_failures
from components.validation.suite import run_suite, summarize


def validate_folder(root: Path, cfg: ValidationConfig, state: Path | None = None, dataset_md5: str | None = None) -> ValidationReport:
    """Build the manifest for `root`, validate it, and check drift against the last passed version.

    With `state` (a folder), GX keeps its results and Data Docs there, and a passing dataset's profile is stored
    as the drift baseline for the next version.
    """
    manifest = build_manifest(root, cfg.max_pixels)
    result, docs = run_suite(manifest, cfg, state / "gx" if state else None)
    failures = summarize(result, manifest)
    profile = dataset_profile(manifest, list(cfg.labels))
    baselines = state / "validation" if state else None
    baseline = read_baseline(baselines) if baselines else None
    compare = cfg.drift != "off" and baseline and baseline.get("md5") != dataset_md5
    findings = detect_drift(profile, baseline, cfg) if compare else []
    if findings and cfg.drift == "fail":
        failures.append(RuleFailure(rule="no drift from the last passed version", expectation="drift", column=None, observed=findings))
    report = ValidationReport(
        success=not failures,
        images=int(len(manifest)),
        failures=failures,
        profile=profile,
        drift=Drift((baseline or {}).get("md5"), findings, cfg.drift),
        data_docs=str(docs) if docs else None,
        dataset_md5=dataset_md5,
    )
    if report.success and baselines is not None and dataset_md5:
        store_baseline(baselines, dataset_md5, profile)
    return report


def require_valid(root: Path, cfg: ValidationConfig, state: Path | None = None, dataset_md5: str | None = None) -> ValidationReport:
    """validate_folder, raising ValidationFailed (naming each offending file and rule) when the data fails."""
    report = validate_folder(root, cfg, state, dataset_md5)
    if not report.success:
        raise ValidationFailed(f"validation of {root} failed, nothing was trained: {format_failures(report)}", report)
    return report
