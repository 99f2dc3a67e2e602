"""What a killed process left: its MLflow run RUNNING (made FAILED), its Prefect flow run Running (made Crashed), and
its model's retrain slot on a configured Prefect server (released).

Each run records its owner (host, pid, process start time) and its Prefect flow run id; a run is reaped only when
it ran on this host and that exact process is gone, so live runs and other hosts' runs are never touched.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from components.core.names import TAG_FLOW_RUN_ID, TAG_PID, TAG_REAPED
from components.lineage.records import note_reaped_versions
from components.orchestration.concurrency import LeaseRecord, lock_dir, release_dead_leases, server_configured
from components.registry.tracking import client, end_run, orphaned, running_runs


@dataclass(frozen=True)
class Reaped:
    run_id: str
    pid: str
    flow_run_id: str | None
    flow_run_marked: bool


@dataclass(frozen=True)
class Doctored:
    reaped: list[Reaped]
    released: list[LeaseRecord]  # retrain slots whose holder was gone


def doctor(project_dir: Path) -> Doctored:
    """Reap this host's orphaned runs and release the retrain slots their processes held (with a configured server)."""
    reaped = reap(project_dir)
    return Doctored(reaped, release_dead_leases(lock_dir(project_dir)) if server_configured() else [])


def reap(project_dir: Path, mark_flow_runs: bool = True) -> list[Reaped]:
    """Mark this host's orphaned MLflow runs FAILED and, with a Prefect API at hand, their flow runs Crashed."""
    mlc, host = client(project_dir), socket.gethostname()
    reaped = []
    for run in running_runs(mlc):
        tags = dict(run.data.tags)
        if not orphaned(tags, host):
            continue
        reason = f"process {tags[TAG_PID]} on {host} is gone (killed?)"
        mlc.set_tag(run.info.run_id, TAG_REAPED, reason)
        end_run(mlc, run.info.run_id, "FAILED")
        note_reaped_versions(mlc, run.info.run_id, reason)  # why a version it registered stands, or does not
        flow_run_id = tags.get(TAG_FLOW_RUN_ID) or None
        marked = mark_flow_runs and flow_run_id is not None and _mark_crashed(flow_run_id, reason)
        reaped.append(Reaped(run.info.run_id, tags[TAG_PID], flow_run_id, marked))
    return reaped


def _mark_crashed(flow_run_id: str, reason: str) -> bool:
    """Set a flow run that is still RUNNING to Crashed; False when it is not running or the API does not know it."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    with get_client(sync_client=True) as prefect:
        try:
            flow_run = prefect.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return False
        if not (flow_run.state and flow_run.state.is_running()):
            return False
        prefect.set_flow_run_state(flow_run_id, Crashed(message=reason), force=True)
    return True
