"""Real servers as local processes on 127.0.0.1, for the tests of the production topology: a PostgreSQL cluster in
a temporary folder, moto's S3 server, `mlflow server`, `prefect server start` and a Prefect worker. Every process is
started in its own process group and killed (the whole group) when its context exits."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Poll `url` until it answers 2xx; fail with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run `args` in a new process group with output to `log`; on exit, SIGTERM the group, then SIGKILL."""
    out = log.open("ab")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    try:
        yield proc
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        out.close()


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the machine's postgres user then.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def postgres_binaries() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    return Path(found).resolve().parent if found else None


@contextlib.contextmanager
def postgres(databases: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL cluster in a temporary folder of its own (as root, pytest's folders are closed to the
    postgres user), removed afterwards; yields {database: 'postgresql://user@127.0.0.1:port/database'}."""
    bindir = postgres_binaries()
    root = Path(tempfile.mkdtemp(prefix="ganops-pg-"))
    try:
        with _cluster(bindir, root, databases) as urls:
            yield urls
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _cluster(bindir: Path, root: Path, databases: tuple[str, ...]) -> Iterator[dict[str, str]]:
    data, sockets = root / "pgdata", root / "sockets"
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"]), check=True, capture_output=True
    )
    port = free_port()
    log = root / "postgres.log"
    with process(
        _as_postgres(
            [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(sockets), "-c", "fsync=off"]
        ),
        log,
    ) as proc:
        deadline = time.monotonic() + 60
        while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        for name in databases:
            subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, name], check=True, capture_output=True
            )
        yield {name: f"postgresql://{user}@127.0.0.1:{port}/{name}" for name in databases}


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def moto_s3(root: Path, buckets: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """moto's standalone S3 server; yields the environment a client needs (endpoint and dummy credentials)."""
    import boto3

    port = free_port()
    log = root / "moto.log"
    with process([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log) as proc:
        endpoint = f"http://127.0.0.1:{port}"
        wait_for(f"{endpoint}/moto-api/", proc, log)
        env = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint}
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, **{k.lower(): v for k, v in S3_ENV.items() if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1"
        )
        for bucket in buckets:
            s3.create_bucket(Bucket=bucket)
        yield env


@contextlib.contextmanager
def mlflow_server(root: Path, backend: str, artifacts: str, env: dict) -> Iterator[str]:
    """`mlflow server` with a database backend and an artifact destination it proxies; yields its URL."""
    port = free_port()
    log = root / "mlflow.log"
    args = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        artifacts,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with process(args, log, env={**env, "MLFLOW_ENABLE_TELEMETRY": "false"}) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/health", proc, log, timeout=180)
        yield url


@contextlib.contextmanager
def prefect_server(root: Path, database: str | None) -> Iterator[dict[str, str]]:
    """`prefect server start` (scheduler on) on `database` (SQLite when None); yields the client environment."""
    port = free_port()
    home = root / "prefect-home"
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # The scheduler runs every few seconds here so a test sees scheduled runs without waiting a minute.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    }
    if database:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database.replace("postgresql://", "postgresql+asyncpg://", 1)
    log = root / "prefect-server.log"
    with process([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], log, env=env) as proc:
        api = f"http://127.0.0.1:{port}/api"
        wait_for(f"{api}/health", proc, log, timeout=180)
        yield {"PREFECT_API_URL": api, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
