"""The `rebalance` flow: plan -> choose the method (quality and benefit checks) -> write -> validate -> import, each a
task calling one component step.

Deployed like `retrain` (infra/prefect.yaml, `rebalance-on-demand`); the worker's log shows the plan, the quality
and benefit tables (also Prefect table artifacts), each fit of the benefit check, and why the method was chosen.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from components.config import RetrainConfig
from components.data.versioning import import_dataset
from components.presets import load_config
from components.synthesis.benefit import benefit_rows, format_benefit
from components.synthesis.quality import format_quality
from components.synthesis.rebalance import ClassPlan, format_plan, parse_target
from components.synthesis.synthesize import Method, Sets, choose, prepare, validate_rebalanced, write_chosen

TASK: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="plan", **TASK)
def plan_task(
    root: Path, model: str | None, data: Path, out: Path, target: str, config: RetrainConfig, classes: list[str] | None, force: bool
) -> tuple[Sets, list[ClassPlan]]:
    sets, plan = prepare(root, model, data, out, parse_target(target), config.synthesis, classes, force)
    served = sets.served
    source = f"{served.model_name} version {served.version} (export verified)" if served else "no generator"
    get_run_logger().info("%s; plan:\n%s", source, format_plan(plan))
    return sets, plan


@task(name="choose-method", **TASK)
def method_task(sets: Sets, plan: list[ClassPlan], target: str, config: RetrainConfig, check: bool, require_benefit: bool) -> Method:
    method = choose(sets, plan, parse_target(target), config.synthesis, check, require_benefit, progress=print)
    if method.quality is not None:
        get_run_logger().info(format_quality(method.quality))
        create_table_artifact(key="rebalance-quality", table=[asdict(c) for c in method.quality.classes], description="Quality check")
    if method.benefit is not None:
        get_run_logger().info(format_benefit(method.benefit))
        create_table_artifact(key="rebalance-benefit", table=benefit_rows(method.benefit), description="Benefit check")
    get_run_logger().info("method %s: %s", method.name, method.reason)
    return method


@task(name="write", **TASK)
def write_task(sets: Sets, plan: list[ClassPlan], method: Method, data: Path, out: Path, force: bool) -> dict:
    return write_chosen(sets, plan, method, data, out, force)


@task(name="validate", **TASK)
def validate_task(out: Path, config: RetrainConfig, root: Path) -> int:
    return validate_rebalanced(out, config, root).images


@task(name="import", **TASK)
def import_task(root: Path, out: Path, data_dir: str) -> str:
    return import_dataset(root, str(out), data_dir)[1]["md5"]


@flow(name="rebalance", log_prints=True)
def rebalance(
    model: str | None,
    data: str,
    out: str,
    target: str = "max",
    preset: str = "cdcgan",
    overrides: list[str] | None = None,
    import_data: bool = False,
    force: bool = False,
    classes: list[str] | None = None,
    project_dir: str = ".",
    check: bool = True,
    require_benefit: bool = False,
) -> dict:
    """Rebalance the ImageFolder `data` with the conditional generator `model` (MODEL@ALIAS; None for oversample or
    SMOTE alone) into `out` (only the `classes` named, when given) by the preset's synthesis.method, with the benefit
    check unless `check` is off; with `import_data`, make it the project's dataset as a new DVC version."""
    root = Path(project_dir).resolve()
    config = load_config(preset, list(overrides or []))
    data_path, out_path = (root / data).resolve(), (root / out).resolve()
    sets, plan = plan_task(root, model, data_path, out_path, target, config, classes, force)
    method = method_task(sets, plan, target, config, check, require_benefit)
    manifest = write_task(sets, plan, method, data_path, out_path, force)
    images = validate_task(out_path, config, root)
    md5 = import_task(root, out_path, config.data.dir) if import_data else None
    print(
        f"rebalanced {data_path} into {out_path} by {method.name}: {images} images, {len(manifest['files'])} synthetic, "
        f"{len(manifest['repeated'])} repeated" + (f"; imported as {config.data.dir}/ (md5 {md5})" if md5 else "")
    )
    return {
        "out": str(out_path),
        "images": images,
        "synthetic": len(manifest["files"]),
        "repeated": len(manifest["repeated"]),
        "method": method.name,
        "reason": method.reason,
        "dataset_md5": md5,
        "generator": manifest["generator"],
    }
