"""The `rebalance` flow: quality check -> generate -> validate -> import, each a task calling one component step.

Deployed like `retrain` (infra/prefect.yaml, `rebalance-on-demand`); the worker's log shows the quality table, the
plan and the generation's progress.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from components.config import RetrainConfig, load_config
from components.core.paths import state_dir
from components.core.progress import progress_bar
from components.data.versioning import import_dataset
from components.serving.runtime import Served
from components.synthesis.generate import check_output, require_conditional
from components.synthesis.quality import QualityReport, format_quality
from components.synthesis.rebalance import ClassPlan, count_classes, format_plan, parse_target, plan_rebalance, write_rebalanced
from components.synthesis.synthesize import open_generator, require_quality, validate_rebalanced

TASK: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="plan", **TASK)
def plan_task(
    root: Path, model: str, data: Path, out: Path, target: str, config: RetrainConfig, classes: list[str] | None, force: bool
) -> tuple[Served, list[ClassPlan]]:
    check_output(out, force, data)
    served = open_generator(root, model)
    plan = plan_rebalance(
        count_classes(data, require_conditional(served)), parse_target(target), config.synthesis.max_synthetic_fraction, classes
    )
    get_run_logger().info("%s version %s (export verified); plan:\n%s", served.model_name, served.version, format_plan(plan))
    return served, plan


@task(name="quality-check", **TASK)
def quality_task(root: Path, served: Served, data: Path, plan: list[ClassPlan], config: RetrainConfig) -> QualityReport:
    report = require_quality(served, data, plan, config.synthesis, state_dir(root) / "cache" / "quality")
    get_run_logger().info(format_quality(report))
    create_table_artifact(
        key="rebalance-quality",
        table=[asdict(c) for c in report.classes],
        description=f"Quality check of {served.model_name} version {served.version}",
    )
    return report


@task(name="generate", **TASK)
def generate_task(
    served: Served, data: Path, plan: list[ClassPlan], out: Path, config: RetrainConfig, quality: QualityReport, force: bool
) -> dict:
    total = max(1, sum(p.synthetic for p in plan))
    return write_rebalanced(served, data, plan, out, config.synthesis, quality, force, progress_bar(total, "generate", "image"))


@task(name="validate", **TASK)
def validate_task(out: Path, config: RetrainConfig, root: Path) -> int:
    return validate_rebalanced(out, config, root).images


@task(name="import", **TASK)
def import_task(root: Path, out: Path, data_dir: str) -> str:
    return import_dataset(root, str(out), data_dir)[1]["md5"]


@flow(name="rebalance", log_prints=True)
def rebalance(
    model: str,
    data: str,
    out: str,
    target: str = "max",
    preset: str = "cdcgan",
    overrides: list[str] | None = None,
    import_data: bool = False,
    force: bool = False,
    classes: list[str] | None = None,
    project_dir: str = ".",
) -> dict:
    """Rebalance the ImageFolder `data` with the conditional generator `model` (MODEL@ALIAS) into `out` (only the
    `classes` named, when given); with `import_data`, make it the project's dataset as a new DVC version."""
    root = Path(project_dir).resolve()
    config = load_config(preset, list(overrides or []))
    data_path, out_path = (root / data).resolve(), (root / out).resolve()
    served, plan = plan_task(root, model, data_path, out_path, target, config, classes, force)
    quality = quality_task(root, served, data_path, plan, config)
    manifest = generate_task(served, data_path, plan, out_path, config, quality, force)
    images = validate_task(out_path, config, root)
    md5 = import_task(root, out_path, config.data.dir) if import_data else None
    print(
        f"rebalanced {data_path} into {out_path}: {images} images, {len(manifest['files'])} synthetic"
        + (f"; imported as {config.data.dir}/ (md5 {md5})" if md5 else "")
    )
    return {
        "out": str(out_path),
        "images": images,
        "synthetic": len(manifest["files"]),
        "dataset_md5": md5,
        "generator": manifest["generator"],
    }
