"""Operations: mark what a killed run left, deploy to a Prefect server, serve an export over HTTP."""

from __future__ import annotations

from pathlib import Path

import typer

from components.core.names import SERVING_RUNTIMES, TORCHSCRIPT_RUNTIME
from flows.cli.options import ProjectOpt, prepare_env


def doctor(project_dir: Path = ProjectOpt) -> None:
    """Find what a killed process left on this host and mark or release it: its MLflow run FAILED, its flow run
    Crashed, its model's retrain slot on the configured Prefect server released (rather than held until the lease
    runs out)."""
    root = prepare_env(project_dir)
    from components.core.paths import state_dir
    from components.orchestration.local_server import prefect_api
    from components.orchestration.reaper import doctor as doctor_project

    with prefect_api(state_dir(root) / "prefect" / "server.log"):
        done = doctor_project(root)
    for dead in done.reaped:
        typer.echo(
            f"MLflow run {dead.run_id}: FAILED (process {dead.pid} is gone); flow run {dead.flow_run_id}: "
            f"{'Crashed' if dead.flow_run_marked else 'not running'}"
        )
    for lease in done.released:
        typer.echo(f"retrain slot of {lease.model} released (lease {lease.lease_id}; process {lease.pid} is gone)")
    typer.echo(f"{len(done.reaped)} orphaned run(s) marked" if done.reaped else "no orphaned runs")


def deploy(project_dir: Path = ProjectOpt) -> None:
    """Create the work pools (when missing) and the deployments of infra/prefect.yaml on the Prefect server that
    PREFECT_API_URL names, for this project. Safe to run again."""
    root = prepare_env(project_dir)
    from components.orchestration.deploy import deploy as deploy_project

    created, plan = deploy_project(root)
    for pool, kind in plan.pools.items():
        typer.echo(f"work pool {pool} ({kind}): {'created' if pool in created else 'exists'}")
    for model in sorted(plan.models):
        typer.echo(f"one retrain at a time for {model}")
    for name in plan.deployments:
        typer.echo(f"deployment {name}")
    typer.echo(f"start a worker: prefect worker start --pool {next(iter(plan.pools))}")


def serve(
    source: str = typer.Argument(
        ..., help="MODEL@ALIAS, MODEL@VERSION, an export folder, or an export in S3 (s3://bucket/prefix/MODEL/vN)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    runtime: str = typer.Option(
        TORCHSCRIPT_RUNTIME, "--runtime", help=f"{' or '.join(SERVING_RUNTIMES)}: the export file to load (serving.formats.RUNTIMES)."
    ),
    follow: bool = typer.Option(False, "--follow", help="Swap in the export the alias points at when it moves (verified first)."),
    poll_s: float = typer.Option(5.0, "--poll-s", min=0.1, help="How often --follow looks at the alias (seconds)."),
    max_n: int = typer.Option(256, "--max-n", min=1, help="Most images one request may ask for."),
    max_body_bytes: int = typer.Option(65536, "--max-body-bytes", min=64, help="Largest request body accepted."),
    batch_wait_ms: float = typer.Option(
        0.0,
        "--batch-wait-ms",
        min=0.0,
        help="How long a lone request waits for others to share its forward pass (0: it goes on the loop's next turn, with "
        "every request already read; those arriving during a forward pass go in the next one).",
    ),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        help="Server processes sharing the port, each loading and verifying the export itself; /metrics sums them all (0: one per CPU).",
    ),
    project_dir: Path = ProjectOpt,
) -> None:
    """Serve a verified export over HTTP: POST /v1/generate, GET /v1/model, /healthz, /readyz, /metrics."""
    root = prepare_env(project_dir)
    import logging

    from components.serving.app import ServeSettings
    from components.serving.service import LOG_FORMAT, ServeOptions, default_workers
    from components.serving.service import serve as serve_source

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    settings = ServeSettings(max_n=max_n, max_body_bytes=max_body_bytes, batch_wait_ms=batch_wait_ms)
    serve_source(ServeOptions(source, str(root), runtime, follow, poll_s, settings, workers or default_workers(), host, port))


COMMANDS = (doctor, deploy, serve)
