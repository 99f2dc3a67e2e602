"""The retrain flow's tasks: each calls one component function and adds retries, logging and Prefect artifacts.

Tasks that talk to MLflow, S3 or the Prefect API retry lost connections and timeouts (SERVICE_TASK); the others
run once (a lost reply from `register` must not register twice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from components.config import RetrainConfig, config_to_dict, export_root
from components.core.faults import AFTER_EXPORT, AFTER_REGISTER, fault_point
from components.core.names import (
    ARTIFACT_CONFIG,
    ARTIFACT_DATA_DOCS,
    ARTIFACT_GATE,
    ARTIFACT_REFERENCE_STATS,
    ARTIFACT_SAMPLES,
    ARTIFACT_SUMMARY,
    ARTIFACT_VALIDATION_REPORT,
    TAG_CONFIG_SHA256,
    TAG_FLOW,
    TAG_FLOW_RUN_ID,
    TAG_GATE_SHA256,
    TAG_PAIRED_WITH,
    TAG_REUSED_VERSION,
    TAG_SUMMARY_SHA256,
    TAG_VALIDATION_SHA256,
    VALIDATION_IMAGES,
    VALIDATION_SUCCESS,
    champion_metric,
)
from components.core.paths import state_dir
from components.core.progress import progress_bar
from components.data.versioning import DatasetVersion, dvc_remote_url, resolve_dataset
from components.evaluation.evaluate import Scores, evaluate_generator
from components.lineage.openlineage import retrain_event
from components.lineage.records import record_run_artifact
from components.lineage.summary import approval_markdown, rules_table, run_link, summary_markdown, validation_table
from components.lineage.tags import dataset_input, mlflow_identity_tags
from components.orchestration.reaper import reap
from components.orchestration.retries import retry_transient
from components.orchestration.training_jobs import job_result_folder, submit_training, train_folder
from components.promotion import ledger
from components.promotion.champion import ChampionScores, check_champion_shape, score_champion
from components.promotion.gate import AWAIT_APPROVAL, Decision
from components.promotion.moves import StaleDecision, commit_decision, prior_decision, reconcile
from components.registry.models import record_export, refuse_withdrawn_data
from components.registry.tracking import RunTracker, open_run, owner_tags
from components.serving.export import export_generator, infra_check, manifest_digest
from components.serving.mlflow_model import register_generator
from components.serving.publish import publish_export
from components.training.job import TrainOutcome, effective_launcher, run_training
from components.validation.results import ValidationReport
from components.validation.validate import validate_folder

TASK: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
GATE_ATTEMPTS = 3
# Tasks that talk to MLflow, S3 or the Prefect API retry lost connections and timeouts, nothing else.
SERVICE_TASK: dict[str, Any] = {**TASK, "retries": 3, "retry_delay_seconds": [2, 10, 30], "retry_condition_fn": retry_transient}


@task(name="reap", **SERVICE_TASK)
def reap_task(root: Path) -> None:
    """Runs a killed process left RUNNING become FAILED (MLflow) and Crashed (Prefect) before this one starts."""
    for dead in reap(root):
        get_run_logger().warning(
            "marked MLflow run %s FAILED and flow run %s %s: its process %s is gone",
            dead.run_id,
            dead.flow_run_id,
            "Crashed" if dead.flow_run_marked else "(not running)",
            dead.pid,
        )


@task(name="dataset-version", **SERVICE_TASK)
def dataset_version_task(root: Path, config: RetrainConfig) -> DatasetVersion:
    data = config.data
    version = resolve_dataset(root, data.dir, data.dvc_file, data.revision, state_dir(root) / "datasets")
    get_run_logger().info("dataset %s md5 %s (data.dvc at %s)", version.root, version.md5, version.data_git_rev)
    if version.data_dirty:
        get_run_logger().warning(
            "%s is not committed: no git revision names dataset md5 %s, so the model's lineage will "
            "say so (commit it before training to make the dataset reproducible)",
            data.dvc_file,
            version.md5,
        )
    return version


@task(name="start-run", **SERVICE_TASK)
def start_run_task(root: Path, config: RetrainConfig, dataset: DatasetVersion) -> RunTracker:
    params = {
        "config_name": config.name,
        "seed": config.seed,
        "dataset_md5": dataset.md5,
        **{f"train.{k}": v for k, v in config.train.model_dump().items()},
        **{f"evaluate.{k}": v for k, v in config.evaluate.model_dump().items()},
        **{f"gate.{k}": v for k, v in config.gate.model_dump().items()},
        **{f"data.{k}": v for k, v in config.data.model_dump().items()},
        **{f"validation.{k}": v for k, v in config.validation.model_dump().items()},
    }
    tags = {TAG_FLOW: "retrain", TAG_FLOW_RUN_ID: str(flow_run.id or ""), **owner_tags(), **mlflow_identity_tags(dataset)}
    tracker = open_run(root, config.registry.experiment, f"retrain-{config.name}", params, tags)
    tracker.tags({TAG_CONFIG_SHA256: tracker.json(config_to_dict(config), ARTIFACT_CONFIG)})
    return tracker


@task(name="validate", **TASK)
def validate_task(root: Path, config: RetrainConfig, run: RunTracker, dataset: DatasetVersion) -> ValidationReport:
    report = validate_folder(dataset.root, config.validation, state_dir(root), dataset.md5)
    run.tags({TAG_VALIDATION_SHA256: run.json(report.to_dict(), ARTIFACT_VALIDATION_REPORT)})
    run.dataset(dataset_input(dataset, report, dvc_remote_url(root)))
    if report.data_docs:
        run.folder(Path(report.data_docs).parent, ARTIFACT_DATA_DOCS)
    for finding in report.drift.findings:
        get_run_logger().warning("drift from the last passed dataset %s: %s", report.drift.baseline_md5, finding)
    run.metrics({VALIDATION_IMAGES: report.images, VALIDATION_SUCCESS: float(report.success)})
    create_table_artifact(validation_table(report), key="validation", description=f"Validation of dataset {dataset.md5}")
    get_run_logger().info("validation %s on %d images", "passed" if report.success else "FAILED", report.images)
    return report


@task(name="check-registry", **TASK)
def check_registry_task(config: RetrainConfig, run: RunTracker, report: ValidationReport, dataset_md5: str) -> None:
    """Before training: the dataset was not withdrawn, the aliases agree with the promotion ledger (a crash may have
    left them behind), and the registered model makes images of this dataset's shape."""
    refuse_withdrawn_data(run.mlc, dataset_md5)
    for moved in reconcile(run.mlc, config.registry.model_name):
        get_run_logger().warning("repaired from the promotion ledger: %s", moved)
    check_champion_shape(run.mlc, config.registry.model_name, report.profile.image_shape)


@task(name="train", **TASK)
def train_task(root: Path, config: RetrainConfig, run: RunTracker, dataset: DatasetVersion, key: str) -> TrainOutcome:
    """Train into the folder of this training key: reuse its finished result or resume from its checkpoints; on
    another work pool when train.work_pool names one."""
    out = train_folder(root, key)
    live = not config.train.work_pool and effective_launcher(config.train) == "inprocess"
    if config.train.work_pool:
        out = job_result_folder(root, key)
        outcome = submit_training(config, dataset, run, out)
    else:
        outcome = run_training(
            dataset.root, config, out, root, on_metrics=lambda step, m: run.metrics(m, step), progress=progress_bar, dataset_md5=dataset.md5
        )
    if outcome.reused or not live:  # metrics that were not logged as training went
        run.history(outcome.history)
    for path in outcome.grids:
        run.file(path, ARTIFACT_SAMPLES)
    run.file(outcome.loss_plot)
    if outcome.reused:
        get_run_logger().info("reused the finished training of key %s in %s (same data, settings and code)", key, out)
    else:
        get_run_logger().info("trained %d steps in %.1f s on %s: %s", outcome.steps, outcome.seconds, outcome.device, outcome.final)
    return outcome


@task(name="prior-version", **SERVICE_TASK)
def prior_version_task(config: RetrainConfig, run: RunTracker, key: str, weights_sha256: str) -> tuple[str | None, Decision | None]:
    """The version an earlier run registered from this same training result (it is never registered twice), and
    the gate decision the ledger committed for it."""
    model = config.registry.model_name
    version, decided = prior_decision(run.mlc, model, key, weights_sha256)
    if version is not None:
        run.tags({TAG_REUSED_VERSION: version})
        get_run_logger().info(
            "this training result is already %s version %s (gate: %s)", model, version, decided.verdict if decided else "not decided yet"
        )
    return version, decided


@task(name="evaluate", **TASK)
def evaluate_task(root: Path, config: RetrainConfig, weights: Path, dataset: DatasetVersion) -> Scores:
    return evaluate_generator(
        weights, dataset.root, config.validation.labels, dataset.md5, config.evaluate, state_dir(root) / "cache", config.seed
    )


@task(name="evaluate-champion", **SERVICE_TASK)
def evaluate_champion_task(
    root: Path, config: RetrainConfig, run: RunTracker, dataset: DatasetVersion, candidate: Path
) -> ChampionScores | None:
    """Re-score the current champion on this data with this extractor and the candidate's latents, so the gate
    compares like with like; the paired difference is recorded on the run with the champion version it is against."""
    champion = score_champion(
        run.mlc,
        config.registry.model_name,
        candidate,
        dataset.root,
        config.validation.labels,
        dataset.md5,
        config.evaluate,
        state_dir(root) / "cache",
        config.seed,
    )
    if champion is not None:  # for `ganops approve` and `promote` later: the comparison made here
        run.metrics({**champion.paired, **{champion_metric(k): v for k, v in champion.scores.metrics.items()}})
        run.tags({TAG_PAIRED_WITH: champion.version})
    return champion


@task(name="infra-validate", **TASK)
def infra_task(run: RunTracker, weights: Path) -> dict[str, float]:
    """The export of these weights (TorchScript and ONNX), each loaded in a fresh process without ganops, against
    PyTorch's golden images."""
    report = infra_check(weights)
    run.metrics(report.metrics())
    for runtime in report.runtimes:
        log = get_run_logger().warning if runtime.error else get_run_logger().info
        log("infra validation (fresh process) %s", runtime.summary())
    return report.metrics()


@task(name="register", **TASK)  # not idempotent: a lost reply must not register twice
def register_task(config: RetrainConfig, run: RunTracker, weights: Path, tags: dict, scores: Scores) -> str:
    metric = config.gate.metric
    version = register_generator(run.mlc, run.run_id, weights, config.registry.model_name, {**tags, metric: scores.metrics[metric]})
    fault_point(AFTER_REGISTER)
    get_run_logger().info("registered %s version %s", config.registry.model_name, version)
    return version


@task(name="record-scores", **SERVICE_TASK)
def record_scores_task(run: RunTracker, tags: dict, scores: Scores) -> None:
    run.metrics(scores.metrics)
    if scores.reference_stats is not None:  # the dataset's Inception statistics, reusable by later runs and tools
        run.file(scores.reference_stats, ARTIFACT_REFERENCE_STATS)
    run.tags(tags)


@task(name="gate", **SERVICE_TASK)
def gate_task(
    config: RetrainConfig, run: RunTracker, version: str, decision: Decision, champion: ChampionScores | None, candidate: Scores
) -> ledger.Entry | None:
    """Commit the decision: its evidence on the run, the ledger entry, then the aliases. None when the champion
    moved since it was scored (another retrain's gate came first): judge again."""
    model = config.registry.model_name
    record_run_artifact(run.mlc, model, version, run.run_id, TAG_GATE_SHA256, run.json(decision.as_dict(), ARTIFACT_GATE))
    try:
        entry = commit_decision(
            run.mlc, model, version, decision, champion.version if champion else None, run.run_id, str(flow_run.id or "")
        )
    except StaleDecision as e:
        get_run_logger().warning("%s", e)
        return None
    create_table_artifact(rules_table(decision.results), key="gate", description=f"Gate rules for {model} version {version}")
    if decision.verdict == AWAIT_APPROVAL:
        create_markdown_artifact(
            approval_markdown(
                model,
                version,
                decision,
                candidate.metrics,
                champion.scores.metrics if champion else None,
                config.gate.metric,
                run_link(run.uri, run.experiment_id, run.run_id),
            ),
            key="awaiting-approval",
            description=f"{model} version {version} awaits approval",
        )
    get_run_logger().info(
        "gate %s version %s (ledger entry %d): %s", decision.verdict.upper(), version, entry.seq, "; ".join(decision.reasons)
    )
    return entry


@task(name="export", **SERVICE_TASK)
def export_task(
    root: Path, config: RetrainConfig, run: RunTracker, version: str, weights: Path, lineage: dict, scores: Scores, decision: Decision
) -> Path:
    folder = export_generator(
        weights, export_root(config, root), config.registry.model_name, version, lineage, scores.metrics, decision.as_dict()
    )
    url = publish_export(folder, config.export.s3) if config.export.s3 else None
    record_export(run.mlc, config.registry.model_name, version, folder, manifest_digest(folder), url)
    fault_point(AFTER_EXPORT)
    get_run_logger().info("exported %s version %s to %s%s", config.registry.model_name, version, folder, f" and {url}" if url else "")
    return folder


@task(name="openlineage", **TASK)
def openlineage_task(
    root: Path,
    config: RetrainConfig,
    run: RunTracker,
    dataset: DatasetVersion,
    state: str,
    version: str | None = None,
    error: str | None = None,
) -> None:
    """A START, COMPLETE or FAIL event to the configured OpenLineage backend (none configured: nothing happens)."""
    problem = retrain_event(root, config.registry.model_name, run.run_id, run.uri, dataset, state, version, error)
    if problem:
        get_run_logger().warning("%s", problem)


@task(name="finish-run", **SERVICE_TASK)
def finish_run_task(run: RunTracker, status: str, summary: dict) -> None:
    sha256 = run.json(summary, ARTIFACT_SUMMARY)
    if summary.get("model_name") and summary.get("version"):
        record_run_artifact(run.mlc, summary["model_name"], str(summary["version"]), run.run_id, TAG_SUMMARY_SHA256, sha256)
    run.end(status)
    link = run_link(run.uri, run.experiment_id, run.run_id)
    if status == "FINISHED":
        create_markdown_artifact(summary_markdown(summary, link), key="retrain-summary", description="Retrain summary")
    get_run_logger().info("MLflow run %s: %s", run.run_id, link)
