"""`ganops webhook`: record alias moves made outside ganops (the MLflow UI, another client) as they happen."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.options import ProjectOpt, prepare_env

app = typer.Typer(
    help="Record alias moves made outside ganops in the promotion ledger as they happen (MLflow 3.3+ webhooks, SQL "
    "backend). The shared secret comes from GANOPS_WEBHOOK_SECRET, on both sides.",
    no_args_is_help=True,
)


@app.command("serve")
def webhook_serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8010, "--port", min=1, max=65535),
    project_dir: Path = ProjectOpt,
) -> None:
    """Receive the alias webhooks of the MLflow server MLFLOW_TRACKING_URI names at POST /mlflow-webhook: verify each
    delivery's HMAC signature and age, and append an `outside_move` entry to the model's ledger for a move ganops did
    not make."""
    root = prepare_env(project_dir)
    from components.promotion.receiver import serve

    serve(root, host, port)


@app.command("register")
def webhook_register(
    url: str = typer.Option(..., "--url", help="The receiver's URL as the MLflow server reaches it, ending in /mlflow-webhook."),
    name: str = typer.Option("ganops-alias-moves", "--name", help="The webhook's name in MLflow (one of that name is replaced)."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Create the MLflow webhook (replacing one of the same name) that calls the receiver on
    model_version_alias.created and .deleted, signed with GANOPS_WEBHOOK_SECRET, on the MLflow server
    MLFLOW_TRACKING_URI names (http(s)://...)."""
    root = prepare_env(project_dir)
    from components.promotion.receiver import register

    typer.echo(f"webhook {name}: {register(root, url, name)} -> {url}")
