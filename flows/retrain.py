"""The `retrain` flow: dataset version -> validate -> train -> evaluate -> register -> gate -> export.

Orchestration only: each task calls one component function and adds logging; decisions live in components.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from components import registry
from components.config import RetrainConfig, export_root, state_dir
from components.errors import ValidationFailed
from components.export import export_generator
from components.gates import ci_high_key, decide_promotion
from components.lineage import lineage_tags
from components.metrics import evaluate_generator
from components.train_job import progress_bar, train_in_subprocess, train_to_files
from components.validation import format_failures, validate_folder
from components.versioning import dataset_version, materialize_revision

TASK = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="dataset-version", **TASK)
def dataset_version_task(root: Path, config: RetrainConfig) -> dict:
    if config.data.revision:
        folder, version = materialize_revision(root, config.data.dvc_file, config.data.revision, state_dir(root) / "datasets")
    else:
        folder, version = root / config.data.dir, dataset_version(root, config.data.dir, config.data.dvc_file)
    get_run_logger().info("dataset %s md5 %s (data.dvc at %s)", folder, version.md5, version.data_git_rev)
    return {**version.as_dict(), "root": str(folder)}


@task(name="start-run", **TASK)
def start_run_task(root: Path, config: RetrainConfig, dataset: dict) -> str:
    mlc = registry.client(root)
    experiment = registry.ensure_experiment(mlc, config.registry.experiment, root)
    params = {"config_name": config.name, "seed": config.seed, "dataset_md5": dataset["md5"],
              **{f"train.{k}": v for k, v in config.train.model_dump().items()},
              **{f"evaluate.{k}": v for k, v in config.evaluate.model_dump().items()},
              **{f"gate.{k}": v for k, v in config.gate.model_dump().items()}}
    run_id = registry.start_run(mlc, experiment, f"retrain-{config.name}", params, {"ganops.flow": "retrain"})
    registry.log_json(mlc, run_id, config.model_dump(mode="json"), "config/resolved.json")
    return run_id


@task(name="validate", **TASK)
def validate_task(root: Path, config: RetrainConfig, run_id: str, dataset: dict) -> dict:
    report, manifest = validate_folder(Path(dataset["root"]), config.validation, state_dir(root), dataset["md5"])
    mlc = registry.client(root)
    registry.log_json(mlc, run_id, report, "validation/report.json")
    if report["data_docs"]:
        mlc.log_artifacts(run_id, str(Path(report["data_docs"]).parent), "validation/data_docs")
    for finding in report["drift"]["findings"]:
        get_run_logger().warning("drift from the last passed dataset %s: %s", report["drift"]["baseline_md5"], finding)
    registry.log_metrics(mlc, run_id, {"validation_images": report["images"], "validation_success": float(report["success"])})
    get_run_logger().info("validation %s on %d images", "passed" if report["success"] else "FAILED", report["images"])
    return report


@task(name="train", **TASK)
def train_task(root: Path, config: RetrainConfig, run_id: str, data_root: str) -> dict:
    mlc = registry.client(root)
    out = state_dir(root) / "runs" / run_id
    if config.train.launcher == "inprocess":
        result = train_to_files(Path(data_root), config, out,
                                on_metrics=lambda step, m: registry.log_metrics(mlc, run_id, m, step), progress=progress_bar)
    else:  # its own process (or torchrun on a GPU worker): metrics come back in result.json
        result = train_in_subprocess(Path(data_root), config, out)
        registry.log_history(mlc, run_id, result["history"])
    for path in result["grids"]:
        registry.log_file(mlc, run_id, Path(path), "samples")
    registry.log_file(mlc, run_id, Path(result["loss_plot"]))
    get_run_logger().info("trained %d steps in %.1f s on %s: %s", result["steps"], result["seconds"], result["device"], result["final"])
    return result


@task(name="evaluate", **TASK)
def evaluate_task(root: Path, config: RetrainConfig, weights: str, dataset: dict) -> dict:
    return evaluate_generator(Path(weights), Path(dataset["root"]), config.validation.labels, dataset["md5"],
                              config.evaluate, state_dir(root) / "cache", config.seed)


@task(name="evaluate-champion", **TASK)
def evaluate_champion_task(root: Path, config: RetrainConfig, dataset: dict) -> dict | None:
    """Re-score the current champion on this data with this extractor, so the gate compares like with like."""
    mlc = registry.client(root)
    champion = registry.version_by_alias(mlc, config.registry.model_name, registry.CHAMPION)
    if champion is None:
        return None
    weights = registry.download_weights(config.registry.model_name, str(champion.version))
    scores = evaluate_task.fn(root, config, str(weights), dataset)
    return {"version": str(champion.version), **scores}


@task(name="register", **TASK)
def register_task(root: Path, config: RetrainConfig, run_id: str, weights: str, tags: dict, scores: dict) -> str:
    mlc = registry.client(root)
    registry.log_metrics(mlc, run_id, {k: v for k, v in scores.items() if isinstance(v, float)})
    if "reference_stats" in scores:  # the dataset's Inception statistics, reusable by later runs and tools
        registry.log_file(mlc, run_id, Path(scores["reference_stats"]), "reference_stats")
    registry.set_run_tags(mlc, run_id, tags)
    version = registry.register_generator(mlc, run_id, Path(weights), config.registry.model_name,
                                          {**tags, config.gate.metric: scores[config.gate.metric]})
    get_run_logger().info("registered %s version %s", config.registry.model_name, version)
    return version


@task(name="gate", **TASK)
def gate_task(root: Path, config: RetrainConfig, version: str, decision: dict) -> str | None:
    mlc = registry.client(root)
    previous = registry.apply_decision(mlc, config.registry.model_name, version, decision["promote"], decision["reasons"])
    get_run_logger().info("gate %s version %s: %s", "PROMOTED" if decision["promote"] else "rejected", version, "; ".join(decision["reasons"]))
    return previous


@task(name="export", **TASK)
def export_task(root: Path, config: RetrainConfig, version: str, weights: str, lineage: dict) -> str:
    folder = export_generator(Path(weights), export_root(config, root), config.registry.model_name, version, lineage)
    registry.record_export(registry.client(root), config.registry.model_name, version, folder)
    get_run_logger().info("exported %s version %s to %s", config.registry.model_name, version, folder)
    return str(folder)


@task(name="finish-run", **TASK)
def finish_run_task(root: Path, run_id: str, status: str, summary: dict) -> None:
    mlc = registry.client(root)
    registry.log_json(mlc, run_id, summary, "summary.json")
    registry.end_run(mlc, run_id, status)


def _train_to_export(root: Path, config: RetrainConfig, dataset: dict, run_id: str) -> dict:
    report = validate_task(root, config, run_id, dataset)
    if not report["success"]:
        raise ValidationFailed(f"validation of {dataset['root']} failed, nothing was trained: {format_failures(report)}", report)
    trained = train_task(root, config, run_id, dataset["root"])
    scores = evaluate_task(root, config, trained["weights"], dataset)
    champion = evaluate_champion_task(root, config, dataset)
    tags = lineage_tags(dataset, report, run_id, config.name)
    version = register_task(root, config, run_id, trained["weights"], tags, scores)
    metric = config.gate.metric
    decision = decide_promotion(scores[metric], champion[metric] if champion else None, report["success"], config.gate,
                                scores.get(ci_high_key(metric)))
    previous = gate_task(root, config, version, decision.as_dict())
    export = None
    if decision.promote:
        export = export_task(root, config, version, trained["weights"],
                             {**tags, "model_name": config.registry.model_name, "model_version": version, metric: scores[metric]})
    return {"run_id": run_id, "model_name": config.registry.model_name, "version": version, "scores": scores,
            "champion_before": champion, "decision": decision.as_dict(), "previous_champion": previous,
            "export": export, "dataset": dataset, "tracking_uri": registry.tracking_uri(root)}


@flow(name="retrain", log_prints=True)
def retrain(config: RetrainConfig = RetrainConfig(), project_dir: str = ".") -> dict:
    """Retrain the generator on the DVC-tracked dataset and promote it if it passes the gate."""
    root = Path(project_dir).resolve()
    dataset = dataset_version_task(root, config)
    run_id = start_run_task(root, config, dataset)
    try:
        summary = _train_to_export(root, config, dataset, run_id)
    except BaseException as e:
        stage = "validation" if isinstance(e, ValidationFailed) else "pipeline"
        finish_run_task(root, run_id, "FAILED", {"stage": stage, "error": f"{type(e).__name__}: {e}"})
        raise
    finish_run_task(root, run_id, "FINISHED", summary)
    print(json.dumps({k: summary[k] for k in ("model_name", "version", "decision", "export")}, indent=2))
    return summary
