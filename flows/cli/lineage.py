"""Auditing: which data and code produced a model (lineage, audit) and the HTML report about it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from components.core.errors import GanopsError
from flows.cli.options import ProjectOpt, dataset_md5_of, prepare_env


def lineage(
    model: str = typer.Argument(None, help="MODEL, MODEL@ALIAS or MODEL@VERSION (default alias: champion)."),
    data: str = typer.Option(
        None, "--data", help="Reverse lineage: the versions trained on this dataset (a DVC md5, or a git revision of data.dvc)."
    ),
    project_dir: Path = ProjectOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the chain as JSON."),
) -> None:
    """Show export files -> model version -> training run -> dataset md5 and revision -> validation result; with
    --data, every model version trained on that dataset; synthetic images back to their generator. Exit 1 when an export file does not match its manifest."""
    root = prepare_env(project_dir)
    from components.lineage.chain import data_lineage, format_lineage, format_trained_on, lineage_of

    if (model is None) == (data is None):
        raise GanopsError("name a MODEL or --data REV|MD5 (one of the two)")
    if data is not None:
        found = data_lineage(root, dataset_md5_of(root, data))
        typer.echo(
            json.dumps(found, indent=2) if as_json else format_trained_on(found["dataset_md5"], found["versions"], found["synthetic"])
        )
        return
    chain = lineage_of(root, model)
    typer.echo(json.dumps(chain, indent=2) if as_json else format_lineage(chain))
    if chain["export"].get("hashes_ok") is False:
        raise typer.Exit(1)


def report(
    model: str = typer.Argument(..., help="The registered model."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write (self-contained)."),
    metric: str = typer.Option(None, "--metric", help="The metric to plot. Default: the newest version's gate metric."),
    project_dir: Path = ProjectOpt,
) -> None:
    """One HTML page: champion timeline, the metric per version with intervals, recent samples side by side, gate
    rules, the champion's audit, validation and drift."""
    root = prepare_env(project_dir)
    from components.lineage.html_report import write_report
    from components.registry.tracking import client

    data = write_report(client(root), root, model, out.resolve(), metric)
    typer.echo(f"wrote {out} ({len(data.versions)} versions, {len(data.ledger)} ledger entries)")


def audit(
    model: str = typer.Argument(..., help="MODEL, MODEL@ALIAS or MODEL@VERSION (default alias: champion)."),
    project_dir: Path = ProjectOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the links as JSON."),
    reproduce: bool = typer.Option(
        False,
        "--reproduce",
        help="Also retrain from the recorded config, data and code "
        "(a temporary git worktree, a fresh process) and compare the weights bitwise.",
    ),
) -> None:
    """Re-verify every link from the export back to the weights, model code, config, data (recomputed from DVC),
    validation report, code commit and promotion ledger. Exit 1 naming the first broken link."""
    root = prepare_env(project_dir)
    from components.lineage.audit import audit_version, format_audit
    from components.registry.tracking import client

    result = audit_version(client(root), root, model, reproduce)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_audit(result))
    if result.first_failure is not None:
        raise typer.Exit(1)


COMMANDS = (lineage, report, audit)
