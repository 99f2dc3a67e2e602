"""The synthetic-data commands, each one call for the CLI (and the steps the rebalance flow runs as tasks).

A SOURCE is resolved and verified as `ganops serve` does (MODEL@ALIAS, MODEL@VERSION, an export folder, or an
export in S3): every file against the manifest, the manifest against the version's tag, the golden latents run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.config import RetrainConfig, SynthesisConfig
from components.core.errors import GanopsError, ValidationFailed
from components.core.names import TORCHSCRIPT_RUNTIME
from components.core.paths import state_dir
from components.core.progress import progress_bar
from components.data.versioning import import_dataset
from components.registry.tracking import client
from components.serving.runtime import Served
from components.serving.service import load_source, parse_source
from components.synthesis.generate import Generated, check_output, generate, plan_request, require_conditional
from components.synthesis.quality import QualityReport, check_quality
from components.synthesis.rebalance import ClassPlan, count_classes, plan_rebalance, rebalanced_validation, write_rebalanced
from components.validation.results import ValidationReport, format_failures
from components.validation.validate import validate_folder


class QualityFailed(GanopsError):
    """The generator failed the quality check: nothing was generated."""

    def __init__(self, message: str, report: QualityReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Rebalanced:
    out: Path
    plan: list[ClassPlan]
    quality: QualityReport
    manifest: dict
    validation: ValidationReport
    dataset: dict | None  # the new data.dvc entry when imported


def open_generator(project_dir: Path, source: str) -> Served:
    """The verified export SOURCE names, loaded with its TorchScript file (nothing else from it is loaded)."""
    return load_source(lambda: client(project_dir), parse_source(source), TORCHSCRIPT_RUNTIME, state_dir(project_dir) / "serve")


def generate_images(
    project_dir: Path, source: str, n: int, classes: list[str] | None, seed: int, out: Path, fmt: str = "png", force: bool = False
) -> Generated:
    """`ganops generate`: N images per class (or in all) of SOURCE into OUT with their manifest."""
    served = open_generator(project_dir, source)
    request = plan_request(served, n, classes, seed)
    return generate(served, request, out, fmt, force, progress_bar(sum(request.counts.values()), "generate", "image", stderr=True))


def require_quality(served: Served, data: Path, plan: list[ClassPlan], cfg: SynthesisConfig, cache_dir: Path) -> QualityReport:
    """The quality check on every class the plan generates; QualityFailed naming the first failing class."""
    report = check_quality(served, data, [p.label for p in plan if p.synthetic], cfg, cache_dir)
    if not report.passed:
        first = report.failures[0]
        raise QualityFailed(
            f"{served.model_name} version {served.version} fails the quality check for class {first.label!r}: "
            f"{first.reason}"
            + (f" (and {len(report.failures) - 1} more classes)" if len(report.failures) > 1 else "")
            + "; nothing was generated",
            report,
        )
    return report


def validate_rebalanced(out: Path, config: RetrainConfig, project_dir: Path) -> ValidationReport:
    """The rebalanced folder against the preset's validation with the imbalanced profile and the synthetic bound."""
    cfg = rebalanced_validation(config.validation, config.synthesis.max_synthetic_fraction)
    report = validate_folder(out, cfg, state_dir(project_dir))
    if not report.success:
        raise ValidationFailed(f"the rebalanced set {out} fails validation, nothing was imported: {format_failures(report)}", report)
    return report


def rebalance(
    project_dir: Path,
    model: str,
    data: Path,
    out: Path,
    target: str | int,
    config: RetrainConfig,
    do_import: bool = False,
    data_dir: str = "data",
    force: bool = False,
    classes: list[str] | None = None,
) -> Rebalanced:
    """`ganops rebalance`: plan -> quality check -> write the new ImageFolder -> validate -> (import as a DVC version).
    `classes` limits the generation to those classes (default: every class under the target)."""
    check_output(out, force, data)  # before any work: a refused --out costs nothing
    served = open_generator(project_dir, model)
    plan = plan_rebalance(count_classes(data, require_conditional(served)), target, config.synthesis.max_synthetic_fraction, classes)
    quality = require_quality(served, data, plan, config.synthesis, state_dir(project_dir) / "cache" / "quality")
    total = sum(p.synthetic for p in plan)
    manifest = write_rebalanced(
        served, data, plan, out, config.synthesis, quality, force, progress_bar(max(total, 1), "generate", "image", stderr=True)
    )
    report = validate_rebalanced(out, config, project_dir)
    dataset = import_dataset(project_dir, str(out), data_dir)[1] if do_import else None
    return Rebalanced(out, plan, quality, manifest, report, dataset)
