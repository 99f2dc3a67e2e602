"""The `train` flow: the training step as its own job on a work pool of its own (a GPU pool).

The retrain flow starts it through its deployment when `train.work_pool` is set (orchestration.training_jobs):
everything arrives by reference (the config, the dataset's DVC revision and md5, the MLflow run) and the result
leaves as that run's `training/` artifacts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from components.orchestration.training_jobs import train_job
from components.presets import config_from_dict
from components.registry.tracking import client


@flow(name="train", log_prints=True)
def train(config: dict, dataset_md5: str, data_revision: str, run_id: str, project_dir: str = ".") -> dict:
    """Materialize dataset `dataset_md5` from DVC at `data_revision`, train with `config` (torchrun when
    train.nproc > 1), and upload the result to MLflow run `run_id`."""
    root = Path(project_dir).resolve()
    outcome = train_job(
        root, config_from_dict(config, source="the train flow's config parameter"), dataset_md5, data_revision, run_id, client(root)
    )
    print(
        f"{'reused' if outcome.reused else 'trained'} {outcome.steps} steps on {outcome.device} x{outcome.world_size}; "
        f"weights sha256 {outcome.weights_sha256} uploaded to MLflow run {run_id}"
    )
    return {"run_id": run_id, "steps": outcome.steps, "weights_sha256": outcome.weights_sha256, "reused": outcome.reused}
