"""One retrain per model at a time: a Prefect global concurrency limit of one slot per registered model, when the
runs share a configured Prefect server; a lock file per model in the project's state folder otherwise.

The limit is created on first use (and by `ganops deploy`); the slot is a lease (LEASE_SECONDS), renewed while the run
holds it, so a killed run's slot frees itself when the lease runs out. Sooner: each held lease is recorded in the state
folder with its holder (host, pid namespace, pid, process start time), and `ganops doctor`, or the model's next run
while it waits, releases the leases whose holder process here is gone, at once (release_dead_leases).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from uuid import UUID

from components.core.atomic import file_lock, json_bytes, replace_file
from components.core.paths import state_dir
from components.core.processes import pid_namespace, same_process_alive, start_ticks

# Set by orchestration.local_server while a run's temporary Prefect server is the API.
TEMPORARY_SERVER_ENV = "GANOPS_TEMPORARY_PREFECT_SERVER"
# The slot's lease, renewed in the background while a run holds it: a killed run's slot frees itself this long after
# its last renewal, so the next run of that model waits up to this long.
LEASE_SECONDS = 300.0
RENEW_SECONDS, RETRY_SECONDS = 60.0, 10.0  # renewed every minute, a failed renewal retried every 10 s till the lease ends
LEASES = "leases"  # the folder, under the lock folder, holding one record per held lease


def lock_dir(project_dir: Path) -> Path:
    """Where runs of a project take turns (lock files) and record the slots they hold (LEASES)."""
    return state_dir(project_dir) / "locks"


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


@dataclass(frozen=True)
class LeaseRecord:
    """Who holds a model's slot: written after the lease is granted, touched at each renewal, removed after it is
    released."""

    lease_id: str
    model: str
    host: str
    pid: int
    pid_start: int | None
    pid_ns: str  # processes.pid_namespace(): two containers may share a hostname, never a pid namespace
    flow_run_id: str | None = None

    def holder_gone(self, host: str) -> bool:
        """The holder ran here (this host name and pid namespace) and that exact process (pid and start time) no
        longer runs."""
        here = self.host == host and self.pid_ns == pid_namespace()
        return here and not same_process_alive(self.pid, self.pid_start)


def _record_path(lock_dir: Path, lease_id: str) -> Path:
    return lock_dir / LEASES / f"{lease_id}.json"


def _read_records(lock_dir: Path) -> list[tuple[Path, LeaseRecord]]:
    records = []
    for path in sorted((lock_dir / LEASES).glob("*.json")):
        if path.name.startswith("."):  # a record half written when its run was killed: its lease runs out alone
            continue
        try:
            records.append((path, LeaseRecord(**json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError):  # unreadable debris: nothing to release, and never another's file
            continue
    return records


def release_dead_leases(lock_dir: Path, model: str | None = None) -> list[LeaseRecord]:
    """Release, on the configured Prefect server, the leases recorded in `lock_dir` whose holder process here is gone
    (killed); only `model`'s when given. Returns the records released. A record not renewed for LEASE_SECONDS names a
    lease that has run out: it is removed without asking the server (which may have given the slot to a new run)."""
    from prefect.client.orchestration import get_client

    host, released = socket.gethostname(), list[LeaseRecord]()
    dead = [(p, r) for p, r in _read_records(lock_dir) if (model is None or r.model == model) and r.holder_gone(host)]
    if not dead:
        return released
    with get_client(sync_client=True) as client:
        for path, record in dead:
            with contextlib.suppress(FileNotFoundError):  # another doctor or run removed it meanwhile
                if time.time() - path.stat().st_mtime < LEASE_SECONDS:
                    client.release_concurrency_slots_with_lease(UUID(record.lease_id))
                    released.append(record)
            path.unlink(missing_ok=True)  # after the release: a kill in between leaves the record to retry
    return released


def _release_dead_quietly(lock_dir: Path, model: str) -> None:
    """release_dead_leases for a run about to wait: a failure only costs the wait for the lease to run out."""
    from prefect.logging import get_logger

    try:
        for record in release_dead_leases(lock_dir, model):
            get_logger("ganops").warning(f"released the retrain slot of {model}: its holder, process {record.pid}, is gone")
    except Exception as e:
        get_logger("ganops").warning(f"could not release the retrain slots of dead runs of {model} ({e}); their leases run out")


def _acquire(client, name: str, timeout_seconds: float, holder, while_waiting: Callable[[], None]) -> UUID:
    """One slot of `name` as a lease; waits (the server's Retry-After, at least 1 s) at most `timeout_seconds`, then
    TimeoutError. `while_waiting` runs before each wait (a holder may die meanwhile)."""
    import httpx

    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            response = client.increment_concurrency_slots_with_lease([name], 1, "concurrency", LEASE_SECONDS, holder)
            return UUID(response.json()["lease_id"])
        except httpx.HTTPStatusError as e:
            if e.response.status_code != 423:
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the retrain slot {name} stayed taken for {timeout_seconds:g} s") from None
            while_waiting()
            time.sleep(min(max(float(e.response.headers.get("Retry-After", 1.0)), 1.0), max(left, 0.1)))


@contextlib.contextmanager
def _renewed(lease_id: UUID, record: Path) -> Iterator[None]:
    """Renew the lease in a daemon thread while the block runs, every RENEW_SECONDS, retrying a failed renewal every
    RETRY_SECONDS (so several may fail before the lease runs out); each success touches the record."""
    from prefect.client.orchestration import get_client
    from prefect.logging import get_logger

    stop = threading.Event()

    def renew() -> None:
        wait = RENEW_SECONDS
        while not stop.wait(wait):
            try:
                with get_client(sync_client=True) as client:
                    client.renew_concurrency_lease(lease_id, LEASE_SECONDS)
                with contextlib.suppress(FileNotFoundError):
                    os.utime(record)  # never recreated: a record removed meanwhile stays removed
                wait = RENEW_SECONDS
            except Exception as e:
                get_logger("ganops").error(f"renewing the retrain slot's lease {lease_id} failed ({e}); retrying in {RETRY_SECONDS:g} s")
                wait = RETRY_SECONDS

    thread = threading.Thread(target=renew, name=f"ganops-lease-{lease_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _flow_run_holder():
    """The current Prefect flow run as the lease's holder (shown by the server), or None outside a flow run."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return ConcurrencyLeaseHolder(type="flow_run", id=context.flow_run.id) if context and context.flow_run else None


@contextlib.contextmanager
def one_retrain_per_model(model_name: str, timeout_seconds: float, lock_dir: Path) -> Iterator[None]:
    """Hold the model's slot for the block; wait at most `timeout_seconds` for it (TimeoutError after that).
    Without a configured server, runs of one project take turns on a lock file in `lock_dir` instead."""
    if not server_configured():
        with file_lock(lock_dir / f"{model_name}.lock"):
            yield
        return
    from prefect.client.orchestration import get_client

    ensure_limits({model_name})
    holder = _flow_run_holder()
    with get_client(sync_client=True) as client:  # a dead run of this model no longer makes this one wait
        lease_id = _acquire(client, limit_name(model_name), timeout_seconds, holder, lambda: _release_dead_quietly(lock_dir, model_name))
    path = _record_path(lock_dir, str(lease_id))
    try:
        pid = os.getpid()
        record = LeaseRecord(
            str(lease_id), model_name, socket.gethostname(), pid, start_ticks(pid), pid_namespace(), holder and str(holder.id) or None
        )
        replace_file(lambda tmp: tmp.write_bytes(json_bytes(asdict(record))), path)
        with _renewed(lease_id, path):
            yield
    finally:
        _release(lease_id, path)


def _release(lease_id: UUID, record: Path) -> None:
    """Give the slot back, then drop its record; when the server cannot be told, the record stays for
    release_dead_leases (once this process has ended) and the lease runs out meanwhile."""
    from prefect.client.orchestration import get_client
    from prefect.logging import get_logger

    try:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease_id)
    except Exception as e:
        get_logger("ganops").warning(f"releasing the retrain slot's lease {lease_id} failed ({e}); it runs out by itself")
        return
    record.unlink(missing_ok=True)
