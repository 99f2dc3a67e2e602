"""Prefect events ganops emits, so deployments can trigger on them (`retrain-on-data` in infra/prefect.yaml)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DATASET_UPDATED = "ganops.dataset.updated"
# The env `ganops deploy` sets to the project's resource id, which retrain-on-data's trigger matches.
RESOURCE_ENV = "GANOPS_DATASET_RESOURCE"


def dataset_resource(project_dir: Path) -> str:
    """The Prefect resource id of one project's dataset: its folder name (readable) and a digest of its absolute
    path (unique), so a project's trigger fires on its own imports only."""
    resolved = str(Path(project_dir).resolve())
    return f"ganops.dataset.{Path(resolved).name}.{hashlib.sha256(resolved.encode()).hexdigest()[:12]}"


def emit_dataset_updated(project_dir: Path, md5: str, data_dir: str, files: int) -> bool:
    """Emit `ganops.dataset.updated` when a Prefect server is configured (PREFECT_API_URL); returns whether it was."""
    if not os.environ.get("PREFECT_API_URL"):
        return False
    from prefect.events import emit_event

    emit_event(
        DATASET_UPDATED,
        resource={"prefect.resource.id": dataset_resource(project_dir)},
        payload={"md5": md5, "data_dir": data_dir, "files": files},
    )
    return True
