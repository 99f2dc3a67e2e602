"""MLflow tracking and Model Registry: thin side effects around the pipeline's plain values.

Every call names its run by id (MlflowClient), so tasks can run in any thread. The registry uses aliases
(`champion`, `challenger`, `previous_champion`), never the deprecated stages.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

from components.config import state_dir
from components.errors import RegistryError

CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous_champion"
TAG_GATE, TAG_GATE_REASONS, TAG_REPLACED_BY = "ganops.gate", "ganops.gate_reasons", "ganops.replaced_by"
TAG_EXPORT_DIR = "ganops.export_dir"
MODEL_ARTIFACT = "generator"
WEIGHTS_ARTIFACT = "weights"
SERVING_MODEL_CODE = Path(__file__).with_name("serving_model.py")


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
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    mlc.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def log_history(mlc, run_id: str, history: dict[str, list[float]]) -> None:
    """Log a training history {'step': [...], metric: [...]} step by step."""
    for i, step in enumerate(history.get("step", [])):
        log_metrics(mlc, run_id, {k: v[i] for k, v in history.items() if k != "step" and i < len(v)}, step)


def log_json(mlc, run_id: str, obj: dict, artifact_file: str) -> None:
    mlc.log_dict(run_id, obj, artifact_file)


def log_file(mlc, run_id: str, path: Path, artifact_path: str | None = None) -> None:
    mlc.log_artifact(run_id, str(path), artifact_path)


def set_run_tags(mlc, run_id: str, tags: dict) -> None:
    for k, v in tags.items():
        mlc.set_tag(run_id, k, str(v))


def end_run(mlc, run_id: str, status: str) -> None:
    mlc.set_terminated(run_id, status)


def register_generator(mlc, run_id: str, weights_path: Path, model_name: str, tags: dict) -> str:
    """Log the generator as an MLflow pyfunc model (from code, no pickle) and register it. Returns the version."""
    import mlflow

    with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        # The generator takes a latent array, not typed records: MLflow's type-hint advice does not apply.
        warnings.filterwarnings("ignore", message=".*type hints.*")
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(SERVING_MODEL_CODE),
            artifacts={WEIGHTS_ARTIFACT: str(weights_path)},
            code_paths=[str(Path(__file__).parent)],
            pip_requirements=["torch==2.13.0", "safetensors", "numpy"],
            registered_model_name=model_name,
        )
    version = str(info.registered_model_version)
    for key, value in tags.items():
        mlc.set_model_version_tag(model_name, version, key, str(value))
    return version


def version_by_alias(mlc, model_name: str, alias: str):
    """The model version holding `alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return mlc.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def resolve_version(mlc, model_name: str, ref: str | None):
    """`ref` is an alias, a version number, or None for the champion. Raises RegistryError naming what is missing."""
    from mlflow.exceptions import MlflowException

    ref = ref or CHAMPION
    try:
        if ref.isdigit():
            return mlc.get_model_version(model_name, ref)
        return mlc.get_model_version_by_alias(model_name, ref)
    except MlflowException:
        raise RegistryError(f"model {model_name!r} has no version or alias {ref!r} in the registry") from None


def download_weights(model_name: str, version: str) -> Path:
    """The safetensors file of a registered version, downloaded to a temporary folder."""
    import mlflow

    dest = Path(tempfile.mkdtemp(prefix="ganops-weights-"))
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=str(dest))
    found = sorted(Path(local).rglob("*.safetensors"))
    if not found:
        raise RegistryError(f"model {model_name} version {version} has no safetensors weights in its artifacts")
    return found[0]


def apply_decision(mlc, model_name: str, version: str, promote: bool, reasons: list[str]) -> str | None:
    """Move aliases per the gate's decision. Returns the version the champion alias left, if any."""
    mlc.set_model_version_tag(model_name, version, TAG_GATE_REASONS, json.dumps(reasons))
    if not promote:
        mlc.set_model_version_tag(model_name, version, TAG_GATE, "rejected")
        mlc.set_registered_model_alias(model_name, CHALLENGER, version)
        return None
    found = version_by_alias(mlc, model_name, CHAMPION)
    previous = str(found.version) if found is not None and str(found.version) != version else None
    mlc.set_model_version_tag(model_name, version, TAG_GATE, "promoted")
    if previous is not None:
        mlc.set_registered_model_alias(model_name, PREVIOUS_CHAMPION, previous)
        mlc.set_model_version_tag(model_name, previous, TAG_REPLACED_BY, version)
    mlc.set_registered_model_alias(model_name, CHAMPION, version)
    challenger = version_by_alias(mlc, model_name, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        mlc.delete_registered_model_alias(model_name, CHALLENGER)
    return previous


def record_export(mlc, model_name: str, version: str, folder: Path) -> None:
    mlc.set_model_version_tag(model_name, version, TAG_EXPORT_DIR, str(folder))
