"""Training as a job on its own work pool (`train.work_pool`, e.g. a GPU pool).

Both sides of the exchange live here. The retrain flow submits the `train` flow's deployment on that pool with
references only: the resolved config, the dataset's DVC revision and md5, and its own MLflow run. The job
materializes the dataset from DVC at that revision (checking the md5), trains (torchrun when train.nproc > 1),
and uploads the result to the run's `training/` artifacts, result.json last. The flow downloads that folder and
checks the weights' sha256 before using them. Nothing crosses as a local path.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import cast

from components.config import RetrainConfig, config_to_dict
from components.core.atomic import replace_folder
from components.core.errors import ConfigError, DataError, GanopsError
from components.core.names import ARTIFACT_TRAINING
from components.core.paths import state_dir
from components.core.progress import PrintedProgress
from components.data.versioning import DatasetVersion, materialize_revision
from components.registry.tracking import RunTracker
from components.training.identity import training_key
from components.training.job import RESULT, TrainOutcome, finished_outcome, run_training

TRAIN_FLOW = "train"


def train_folder(project_dir: Path, key: str) -> Path:
    """Where the training of one key lives: checkpoints, samples, weights, result.json."""
    return state_dir(project_dir) / "train" / key


def job_result_folder(project_dir: Path, key: str) -> Path:
    """Where the retrain flow keeps a training job's downloaded result (apart from train_folder, which a job on
    this same machine uses for its own checkpoints)."""
    return state_dir(project_dir) / "train-jobs" / key


def train_deployment(client, work_pool: str) -> str:
    """'train/<deployment>' of the train flow's deployment on `work_pool`. Raises ConfigError naming the pool."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, WorkPoolFilter, WorkPoolFilterName

    found = client.read_deployments(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[TRAIN_FLOW])),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[work_pool])),
    )
    if not found:
        raise ConfigError(
            f"train.work_pool {work_pool!r}: no deployment of the `{TRAIN_FLOW}` flow runs on that pool; "
            "run `ganops deploy` (infra/prefect.yaml declares train-gpu on ganops-gpu)"
        )
    return f"{TRAIN_FLOW}/{sorted(d.name for d in found)[0]}"


def submit_training(config: RetrainConfig, dataset: DatasetVersion, run: RunTracker, out_dir: Path) -> TrainOutcome:
    """Run the train flow on config.train.work_pool, wait for it, and bring its result into out_dir; a result
    already there (an earlier run of the same key) is used without a job."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    done = finished_outcome(out_dir)
    if done is not None:
        return done
    if not dataset.data_git_rev:
        raise DataError(
            f"{config.data.dvc_file} has no commit: commit it so that the training job on work pool "
            f"{config.train.work_pool!r} can fetch dataset {dataset.md5} from DVC"
        )
    with get_client(sync_client=True) as client:
        name = train_deployment(client, config.train.work_pool)
    key = training_key(dataset.md5, config)
    # called from synchronous code, where run_deployment (async_dispatch) runs its synchronous version
    flow_run = cast(
        FlowRun,
        run_deployment(
            name,
            parameters={
                "config": config_to_dict(config),
                "dataset_md5": dataset.md5,
                "data_revision": dataset.data_git_rev,
                "run_id": run.run_id,
            },
            timeout=config.train.job_timeout,
            poll_interval=2,
            idempotency_key=f"{run.run_id}-{key}",
        ),
    )
    if not (flow_run.state and flow_run.state.is_completed()):
        state = flow_run.state.name if flow_run.state else "not started"
        raise GanopsError(
            f"training job {flow_run.name} ({name} on work pool {config.train.work_pool}) ended {state}"
            f" or ran past train.job_timeout={config.train.job_timeout:g} s; its logs are on the Prefect server"
        )

    def download(tmp: Path) -> None:
        run.mlc.download_artifacts(run.run_id, ARTIFACT_TRAINING, str(tmp))
        for item in (tmp / ARTIFACT_TRAINING).iterdir():
            shutil.move(str(item), tmp / item.name)
        (tmp / ARTIFACT_TRAINING).rmdir()

    replace_folder(download, out_dir)
    outcome = finished_outcome(out_dir)
    if outcome is None:
        raise GanopsError(
            f"training job {flow_run.name} left no intact result in MLflow run {run.run_id} "
            f"({ARTIFACT_TRAINING}/{RESULT} missing, or its weights do not match their sha256)"
        )
    return replace(outcome, reused=False)  # the job ran (its log says whether it trained or found the result)


def train_job(project_dir: Path, config: RetrainConfig, dataset_md5: str, data_revision: str, run_id: str, mlc) -> TrainOutcome:
    """The job's side: materialize the dataset (md5 checked), train into the key's folder (resuming or reusing),
    upload the result to MLflow run `run_id` under training/ (result.json last)."""
    dataset = materialize_revision(project_dir, config.data.dvc_file, data_revision, state_dir(project_dir) / "datasets")
    if dataset.md5 != dataset_md5:
        raise DataError(
            f"{config.data.dvc_file} at {data_revision} tracks dataset md5 {dataset.md5}, not {dataset_md5} "
            "as the retrain flow asked; commit data.dvc before training on another work pool"
        )
    out = train_folder(project_dir, training_key(dataset_md5, config))
    outcome = run_training(dataset.root, config, out, project_dir, progress=PrintedProgress, dataset_md5=dataset.md5)
    for path in [outcome.weights, outcome.loss_plot]:
        mlc.log_artifact(run_id, str(path), ARTIFACT_TRAINING)
    for path in outcome.grids:
        mlc.log_artifact(run_id, str(path), f"{ARTIFACT_TRAINING}/{path.parent.relative_to(out)}")
    mlc.log_artifact(run_id, str(out / RESULT), ARTIFACT_TRAINING)  # last: the flow reads a result only when it is there
    return outcome
