"""Prefect events ganops emits, so deployments can trigger on them (`retrain-on-data` in infra/prefect.yaml)."""

from __future__ import annotations

import os

DATASET_UPDATED = "ganops.dataset.updated"


def dataset_resource(project_name: str) -> str:
    return f"ganops.dataset.{project_name}"


def emit_dataset_updated(project_name: str, md5: str, data_dir: str, files: int) -> bool:
    """Emit `ganops.dataset.updated` when a Prefect server is configured (PREFECT_API_URL); returns whether it was."""
    if not os.environ.get("PREFECT_API_URL"):
        return False
    from prefect.events import emit_event

    emit_event(DATASET_UPDATED, resource={"prefect.resource.id": dataset_resource(project_name)},
               payload={"md5": md5, "data_dir": data_dir, "files": files})
    return True
