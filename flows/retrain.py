"""The `retrain` flow: dataset version -> validate -> train -> evaluate -> register -> gate -> export.

Orchestration only: each task calls one component function and adds logging; decisions live in components.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from components.config import DEFAULT_PRESET, RetrainConfig, config_to_dict
from components.core.errors import ValidationFailed
from components.core.names import (
    CHAMPION,
    TAG_TRAIN_KEY,
    TAG_WEIGHTS_SHA256,
)
from components.data.versioning import DatasetVersion
from components.evaluation.evaluate import Scores
from components.lineage.openlineage import COMPLETE, FAIL, START
from components.lineage.tags import artifact_digest, lineage_tags
from components.orchestration.concurrency import lock_dir, one_retrain_per_model
from components.presets import check_output_paths, load_config
from components.promotion.gate import decide
from components.promotion.moves import StaleDecision
from components.promotion.rules import Evidence
from components.registry.tracking import RunTracker, tracking_uri
from components.training.identity import training_key
from components.training.job import TrainOutcome
from components.validation.results import ValidationReport, format_failures
from flows.retrain_tasks import (
    GATE_ATTEMPTS,
    check_registry_task,
    dataset_version_task,
    evaluate_champion_task,
    evaluate_task,
    export_task,
    finish_run_task,
    gate_task,
    infra_task,
    openlineage_task,
    prior_version_task,
    reap_task,
    record_scores_task,
    register_task,
    start_run_task,
    train_task,
    validate_task,
)


def _gate(
    root: Path,
    config: RetrainConfig,
    run: RunTracker,
    dataset: DatasetVersion,
    report: ValidationReport,
    trained: TrainOutcome,
    scores: Scores,
    version: str,
    lineage: dict,
):
    """Judge the registered version against the champion at decision time, export it when it is promoted, and commit
    the decision to the ledger; judged again when another retrain moved the champion meanwhile (compare-and-set).
    Returns (decision, champion scores or None, export folder or None, ledger entry)."""
    infra = infra_task(run, trained.weights)
    export = None
    for _ in range(GATE_ATTEMPTS):
        champion = evaluate_champion_task(root, config, run, dataset, trained.weights)
        evidence = Evidence(
            {**scores.metrics, **infra},
            champion.scores.metrics if champion else None,
            report.success,
            champion.paired if champion else {},
        )
        decision = decide(evidence, config.gate)
        if decision.promote:  # before the champion alias moves: the champion always has an export
            export = export_task(root, config, run, version, trained.weights, {**lineage, "model_version": version}, scores, decision)
        entry = gate_task(config, run, version, decision, champion, scores)
        if entry is not None:
            return decision, champion, export, entry
    raise StaleDecision(f"{config.registry.model_name}: the champion kept moving during {GATE_ATTEMPTS} gate attempts")


def _train_to_export(root: Path, config: RetrainConfig, dataset: DatasetVersion, run: RunTracker) -> dict:
    report = validate_task(root, config, run, dataset)
    if not report.success:
        raise ValidationFailed(f"validation of {dataset.root} failed, nothing was trained: {format_failures(report)}", report)
    check_registry_task(config, run, report, dataset.md5)
    key = training_key(dataset.md5, config)
    trained = train_task(root, config, run, dataset, key)
    scores = evaluate_task(root, config, trained.weights, dataset)
    tags = {
        **lineage_tags(
            dataset, report, run.run_id, config.name, artifact_digest(config_to_dict(config)), artifact_digest(report.to_dict())
        ),
        TAG_TRAIN_KEY: key,
        TAG_WEIGHTS_SHA256: trained.weights_sha256,
    }
    record_scores_task(run, tags, scores)
    version, decision = prior_version_task(config, run, key, trained.weights_sha256)
    metric, champion, previous, export, standing = config.gate.metric, None, None, None, decision is not None
    lineage = {**tags, "model_name": config.registry.model_name, metric: scores.metrics[metric]}
    # A decision (which always comes with its version) means a rerun of a decided result: its export again when it
    # was promoted (a kill may have cut it short).
    if version is not None and decision is not None:
        if decision.promote:
            export = export_task(root, config, run, version, trained.weights, {**lineage, "model_version": version}, scores, decision)
    else:  # also a version registered by a run that died before its gate
        version = version or register_task(config, run, trained.weights, tags, scores)
        decision, champion, export, entry = _gate(root, config, run, dataset, report, trained, scores, version, lineage)
        replaced = entry.aliases_before.get(CHAMPION)
        previous = replaced if decision.promote and replaced != version else None
    return {
        "run_id": run.run_id,
        "model_name": config.registry.model_name,
        "version": version,
        "scores": scores.to_dict(),
        "champion_before": ({"version": champion.version, **champion.scores.to_dict()} if champion else None),
        "decision": decision.as_dict(),
        "previous_champion": previous,
        "export": str(export) if export else None,
        "dataset": dataset.as_dict(),
        "tracking_uri": tracking_uri(root),
        "gate_metric": metric,
        "train_key": key,
        "reused_training": trained.reused,
        "reused_version": standing,
    }


@flow(name="retrain", log_prints=True)
def retrain(
    preset: str = DEFAULT_PRESET, overrides: list[str] | None = None, project_dir: str = ".", config: RetrainConfig | None = None
) -> dict:
    """Retrain the generator on the DVC-tracked dataset and promote it if it passes the gate.

    preset: a preset name (digits, smoke) or a YAML file; overrides: 'key.path=value' items, as `--set` takes;
    config: an already resolved config instead of both.
    """
    root = Path(project_dir).resolve()
    config = check_output_paths(config or load_config(preset, overrides or []), root)
    reap_task(root)
    dataset = dataset_version_task(root, config)
    run = start_run_task(root, config, dataset)
    openlineage_task(root, config, run, dataset, START)
    try:
        with one_retrain_per_model(config.registry.model_name, config.registry.wait_seconds, lock_dir(root)):
            summary = _train_to_export(root, config, dataset, run)
    except BaseException as e:
        stage = "validation" if isinstance(e, ValidationFailed) else "pipeline"
        finish_run_task(run, "FAILED", {"stage": stage, "error": f"{type(e).__name__}: {e}"})
        openlineage_task(root, config, run, dataset, FAIL, error=f"{stage}: {type(e).__name__}: {e}")
        raise
    finish_run_task(run, "FINISHED", summary)
    openlineage_task(root, config, run, dataset, COMPLETE, summary["version"])
    print(
        json.dumps(
            {
                "model_name": summary["model_name"],
                "version": summary["version"],
                "verdict": summary["decision"]["verdict"],
                "export": summary["export"],
            }
        )
    )
    return summary
