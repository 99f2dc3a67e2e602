"""One retrain per model at a time: a Prefect global concurrency limit of one slot per registered model, when the
runs share a configured Prefect server; a lock file per model in the project's state folder otherwise.

The limit is created on first use (and by `ganops deploy`); the slot is a lease (LEASE_SECONDS), so a killed run's
slot frees itself when the lease runs out.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from components.core.atomic import file_lock

# Set by orchestration.local_server while a run's temporary Prefect server is the API.
TEMPORARY_SERVER_ENV = "GANOPS_TEMPORARY_PREFECT_SERVER"
# The slot's lease, renewed in the background while a run holds it: a killed run's slot frees itself this long after
# its last renewal, so the next run of that model waits up to this long.
LEASE_SECONDS = 300.0


def limit_name(model_name: str) -> str:
    return f"ganops-retrain-{model_name}"


def ensure_limits(model_names: set[str]) -> list[str]:
    """Create a limit of one slot for each model that has none; returns the names created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    created = []
    with get_client(sync_client=True) as client:
        for model in sorted(model_names):
            try:
                client.read_global_concurrency_limit_by_name(limit_name(model))
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name(model), limit=1))
                    created.append(limit_name(model))
                except ObjectAlreadyExists:  # another run created it in between
                    pass
    return created


def server_configured() -> bool:
    """Whether runs share a Prefect server the user configured (not the temporary one a single run starts)."""
    return bool(os.environ.get("PREFECT_API_URL")) and not os.environ.get(TEMPORARY_SERVER_ENV)


@contextlib.contextmanager
def one_retrain_per_model(model_name: str, timeout_seconds: float, lock_dir: Path) -> Iterator[None]:
    """Hold the model's slot for the block; wait at most `timeout_seconds` for it (TimeoutError after that).
    Without a configured server, runs of one project take turns on a lock file in `lock_dir` instead."""
    if not server_configured():
        with file_lock(lock_dir / f"{model_name}.lock"):
            yield
        return
    from prefect.concurrency.sync import concurrency

    ensure_limits({model_name})
    with concurrency(limit_name(model_name), occupy=1, timeout_seconds=timeout_seconds, lease_duration=LEASE_SECONDS, strict=True):
        yield
