"""`ganops data`: create, import and restore dataset versions (tracked with DVC)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from flows.cli.options import ProjectOpt, prepare_env

app = typer.Typer(help="Create, import and restore dataset versions (tracked with DVC).", no_args_is_help=True)


@app.command("import")
def data_import(
    source: str = typer.Argument(
        ...,
        help="'digits' (scikit-learn's bundled 8x8 digits), an ImageFolder directory "
        "<dir>/<label>/<image>, an .npz with x and y arrays, or s3://bucket/prefix.",
    ),
    project_dir: Path = ProjectOpt,
    data_dir: str = typer.Option("data", help="Dataset folder inside the project, tracked by <data-dir>.dvc."),
    max_pixels: int = typer.Option(
        4096 * 4096, "--max-pixels", min=1, help="Images with more pixels are refused from their header (validation.max_pixels)."
    ),
) -> None:
    """Write SOURCE as the project's dataset, track it with DVC and push it to the DVC remote. Every file is checked
    first as validation checks it (decodes, within the pixel limit, content matches its suffix, in a label folder,
    one image size; no links to folders, no hidden images): any bad file is named on its own line, exit 2, and
    nothing is written or pushed."""
    root = prepare_env(project_dir)
    from components.data.versioning import import_dataset

    count, entry = import_dataset(root, source, data_dir, max_pixels)
    typer.echo(f"imported {count} files into {data_dir}/ (md5 {entry['md5']}); commit {data_dir}.dvc to record this version")
    from components.orchestration.events import DATASET_UPDATED, emit_dataset_updated

    if emit_dataset_updated(root, entry["md5"], data_dir, count):
        typer.echo(f"event {DATASET_UPDATED} sent to {os.environ['PREFECT_API_URL']}")


@app.command("ensure")
def data_ensure(project_dir: Path = ProjectOpt, data_dir: str = typer.Option("data", help="Dataset folder.")) -> None:
    """Make sure the dataset data.dvc names is present: keep it, pull it from the DVC remote, or rebuild the digits set."""
    root = prepare_env(project_dir)
    from components.data.versioning import ensure_dataset

    typer.echo(ensure_dataset(root, data_dir))
