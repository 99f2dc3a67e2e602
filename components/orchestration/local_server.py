"""The temporary Prefect server of a single `ganops run` when no server is configured (PREFECT_API_URL unset).

Prefect would start one itself, but as a plain child that survives its parent's SIGKILL (re-parented to PID 1,
still listening). ganops starts it under core.watchdog instead: it dies with the run. Its database stays in the
project's Prefect home, so the next run (or `ganops doctor`) can mark a killed run's flow run Crashed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from components.core.errors import GanopsError
from components.orchestration.concurrency import TEMPORARY_SERVER_ENV

STARTUP_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port: int) -> list[str]:
    """The watchdog-wrapped uvicorn command of Prefect's own temporary server (no UI, ephemeral services)."""
    return [
        sys.executable,
        "-m",
        "components.core.watchdog",
        str(os.getpid()),
        "--",
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


@contextlib.contextmanager
def prefect_api(log: Path, meanwhile: Callable[[], object] | None = None) -> Iterator[str]:
    """Yield the Prefect API URL: PREFECT_API_URL when set, else a temporary server's (its output in `log`; stopped
    on exit, and by the watchdog if this process is killed). `meanwhile()` runs while the server starts (it takes
    about 13 s here): the caller's own imports overlap it."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        if meanwhile is not None:
            meanwhile()
        yield configured
        return
    port = _free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(server_command(port), env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        if meanwhile is not None:
            meanwhile()
        _wait_healthy(url, proc, log)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        # Prefect reads its settings when imported: the process-wide value needs its settings context too.
        os.environ["PREFECT_API_URL"] = url
        os.environ[TEMPORARY_SERVER_ENV] = "1"
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        _drain_to_server()
        os.environ.pop("PREFECT_API_URL", None)
        os.environ.pop(TEMPORARY_SERVER_ENV, None)
        proc.terminate()  # the watchdog stops the server's process group
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _drain_to_server(timeout: float = 10.0) -> None:
    """Send the logs and events Prefect still queues while the server is up. Left queued, they are retried against
    the stopped server at interpreter exit, which held `ganops run` open for about 75 s after its flow ended."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise GanopsError(f"the temporary Prefect server exited with {proc.returncode} (log {log}): {tail}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise GanopsError(f"the temporary Prefect server at {url} did not answer within {STARTUP_SECONDS} s")
