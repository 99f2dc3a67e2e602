"""MLflow tracking: the store, experiments, and runs, as thin side effects around the pipeline's plain values.

Every call names its run by id (MlflowClient), so tasks can run in any thread; a RunTracker carries the client
and the run id from task to task.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from components.core.atomic import bytes_digest, json_bytes
from components.core.names import TAG_HOST, TAG_PID, TAG_PID_NS, TAG_PID_START
from components.core.paths import state_dir
from components.core.processes import pid_namespace, same_process_alive, start_ticks

if TYPE_CHECKING:  # mlflow is imported where it is used, to keep it off `ganops --help`
    from mlflow import MlflowClient


def tracking_uri(project_dir: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store under the state folder."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    db = state_dir(project_dir) / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def client(project_dir: Path):
    """An MlflowClient on the configured store; also sets the process-wide URI that log_model needs."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(project_dir)
    configured = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI; keep the environment as the user set it, so the embedded
    # store is never mistaken for a configured server (which would move artifacts to ./mlruns).
    for key, value in configured.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(mlc, name: str, project_dir: Path) -> str:
    """The experiment's id; a new one on the embedded store keeps artifacts under the state folder."""
    found = mlc.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        location = (state_dir(project_dir) / "mlartifacts").as_uri()
    return mlc.create_experiment(name, artifact_location=location)


def start_run(mlc, experiment_id: str, run_name: str, params: dict, tags: dict) -> str:
    run = mlc.create_run(experiment_id, run_name=run_name, tags=tags)
    log_params(mlc, run.info.run_id, params)
    return run.info.run_id


def log_params(mlc, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        mlc.log_batch(run_id, params=items[i : i + 100])


def log_metrics(mlc, run_id: str, metrics: dict, step: int = 0) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    mlc.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def log_history(mlc, run_id: str, history: dict[str, list[float]]) -> None:
    """Log a training history {'step': [...], metric: [...]} step by step."""
    for i, step in enumerate(history.get("step", [])):
        log_metrics(mlc, run_id, {k: v[i] for k, v in history.items() if k != "step" and i < len(v)}, int(step))


def log_json(mlc, run_id: str, obj: dict, artifact_file: str) -> str:
    """Log `obj` as the artifact `artifact_file` (core.atomic.json_bytes); returns the sha256 of the bytes logged."""
    data = json_bytes(obj)
    with tempfile.TemporaryDirectory(prefix="ganops-json-") as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_bytes(data)
        parent = Path(artifact_file).parent.as_posix()
        mlc.log_artifact(run_id, str(path), None if parent == "." else parent)
    return bytes_digest(data)


def log_file(mlc, run_id: str, path: Path, artifact_path: str | None = None) -> None:
    mlc.log_artifact(run_id, str(path), artifact_path)


def set_run_tags(mlc, run_id: str, tags: dict) -> None:
    for k, v in tags.items():
        mlc.set_tag(run_id, k, str(v))


def end_run(mlc, run_id: str, status: str) -> None:
    mlc.set_terminated(run_id, status)


@dataclass(frozen=True)
class RunTracker:
    """One MLflow run of the flow: the client and the run id, passed from task to task."""

    mlc: MlflowClient
    run_id: str
    experiment_id: str = ""

    @property
    def uri(self) -> str:
        return self.mlc.tracking_uri

    def metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        log_metrics(self.mlc, self.run_id, metrics, step)

    def history(self, history: dict[str, list[float]]) -> None:
        log_history(self.mlc, self.run_id, history)

    def json(self, obj: dict, artifact_file: str) -> str:
        return log_json(self.mlc, self.run_id, obj, artifact_file)

    def file(self, path: Path, artifact_path: str | None = None) -> None:
        log_file(self.mlc, self.run_id, path, artifact_path)

    def folder(self, path: Path, artifact_path: str) -> None:
        self.mlc.log_artifacts(self.run_id, str(path), artifact_path)

    def tags(self, tags: dict) -> None:
        set_run_tags(self.mlc, self.run_id, tags)

    def dataset(self, fields: dict[str, str], context: str = "training") -> None:
        """Log a dataset input (mlflow.entities.Dataset fields), shown in MLflow's Datasets column and API."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        self.mlc.log_inputs(self.run_id, datasets=[DatasetInput(Dataset(**fields), [InputTag(MLFLOW_DATASET_CONTEXT, context)])])

    def end(self, status: str) -> None:
        end_run(self.mlc, self.run_id, status)


def open_run(project_dir: Path, experiment: str, run_name: str, params: dict, tags: dict) -> RunTracker:
    """Create a run in `experiment` (created if missing) with params and tags; returns its tracker."""
    mlc = client(project_dir)
    experiment_id = ensure_experiment(mlc, experiment, project_dir)
    return RunTracker(mlc, start_run(mlc, experiment_id, run_name, params, tags), experiment_id)


def owner_tags() -> dict[str, str]:
    """Tags naming this process (host, pid, start time), so a run it leaves RUNNING can be told apart from a live one."""
    pid = os.getpid()
    return {TAG_HOST: socket.gethostname(), TAG_PID: str(pid), TAG_PID_START: str(start_ticks(pid)), TAG_PID_NS: pid_namespace()}


def orphaned(tags: dict[str, str], host: str, is_alive: Callable[[int, int | None], bool] = same_process_alive) -> bool:
    """Whether a RUNNING run's process is gone: it ran on this host and its (pid, start time) no longer runs.
    Runs of other hosts (or of another pid namespace on a host of the same name, as two containers may be), or
    without owner tags, are never judged."""
    if tags.get(TAG_HOST) != host or not tags.get(TAG_PID, "").isdigit():
        return False
    if tags.get(TAG_PID_NS) not in (None, pid_namespace()):
        return False
    ticks = tags.get(TAG_PID_START, "")
    return not is_alive(int(tags[TAG_PID]), int(ticks) if ticks.isdigit() else None)


def running_runs(mlc) -> list:
    """Every RUNNING run in every experiment of the store."""
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in mlc.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    return mlc.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000) if experiments else []
