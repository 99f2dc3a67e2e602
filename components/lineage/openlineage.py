"""OpenLineage run events for Marquez, DataHub and other lineage servers: START, COMPLETE or FAIL of each retrain,
with the DVC dataset version as input and the registered model version as output.

Emitted only when the OpenLineage client is configured (OPENLINEAGE_URL, OPENLINEAGE_CONFIG, or
OPENLINEAGE__TRANSPORT__* variables such as a file transport); otherwise nothing is imported or sent. An event that
cannot be sent is a warning, never a failed run.
"""

from __future__ import annotations

import datetime
import os
import uuid
from dataclasses import dataclass

from components.data.versioning import dvc_remote_url

NAMESPACE = "ganops"
PRODUCER = "https://github.com/ganops/ganops"
START, COMPLETE, FAIL = "START", "COMPLETE", "FAIL"


@dataclass(frozen=True)
class LineageRun:
    """What the events name: the run (the MLflow run id as a UUID), the job, the input dataset."""

    run_id: str
    job: str
    model_name: str
    dataset_namespace: str  # where the dataset lives: the DVC remote
    dataset_name: str
    dataset_md5: str


def configured(environ: dict | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(k in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG") or k.startswith("OPENLINEAGE__TRANSPORT") for k in env)


def public_uri(uri: str) -> str:
    """A URI without user, password or query string: what may leave for a lineage server."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc and not parts.query:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def run_uuid(mlflow_run_id: str) -> str:
    """OpenLineage wants a UUID: an MLflow run id is 32 hexadecimal digits, which is one."""
    return str(uuid.UUID(hex=mlflow_run_id))


def emit(
    run: LineageRun, state: str, model_uri: str | None = None, model_version: str | None = None, error: str | None = None
) -> str | None:
    """Send one event; returns None, or why it was not sent."""
    if not configured():
        return None
    try:
        from openlineage.client import OpenLineageClient
        from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import RunFacet, dataset_version_dataset, error_message_run

        version = dataset_version_dataset.DatasetVersionDatasetFacet
        inputs = [
            InputDataset(
                namespace=run.dataset_namespace, name=run.dataset_name, facets={"version": version(datasetVersion=run.dataset_md5)}
            )
        ]
        outputs = (
            [OutputDataset(namespace=model_uri, name=f"models/{run.model_name}", facets={"version": version(datasetVersion=model_version)})]
            if model_uri and model_version
            else []
        )
        facets: dict[str, RunFacet] = (
            {"errorMessage": error_message_run.ErrorMessageRunFacet(message=error[:2000], programmingLanguage="python")} if error else {}
        )
        event = RunEvent(
            eventType=getattr(RunState, state),
            eventTime=datetime.datetime.now(datetime.UTC).isoformat(),
            run=Run(runId=run.run_id, facets=facets),
            job=Job(namespace=NAMESPACE, name=run.job),
            producer=PRODUCER,
            inputs=inputs,
            outputs=outputs,
        )
        OpenLineageClient().emit(event)
    except Exception as e:  # the client's transports raise their own types; lineage must not fail the run
        return f"OpenLineage {state} event not sent: {type(e).__name__}: {str(e)[:300]}"
    return None


def retrain_event(
    project_dir,
    model_name: str,
    mlflow_run_id: str,
    tracking_uri: str,
    dataset,
    state: str,
    version: str | None = None,
    error: str | None = None,
) -> str | None:
    """The retrain flow's event for `dataset` (a DatasetVersion); returns None, or why it was not sent."""
    if not configured():
        return None
    remote = public_uri(dvc_remote_url(project_dir) or f"file://{project_dir}")
    run = LineageRun(run_uuid(mlflow_run_id), f"retrain.{model_name}", model_name, remote, str(dataset.path), dataset.md5)
    return emit(run, state, public_uri(tracking_uri), version, error)
