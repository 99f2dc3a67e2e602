"""`ganops` command line: one module per command group, each command parsing its options, calling one component
function and printing. Heavy libraries are imported inside commands so `--help` is instant.

Every GanopsError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from components.core.errors import GanopsError
from flows.cli import data, lineage, operations, pipeline, promotion, synthesis, webhook
from flows.cli.options import expand_set_pairs

app = typer.Typer(
    help="MLOps for GAN generators: DVC data, validation, training, FID, registry, gates, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(webhook.app, name="webhook")
for group in (pipeline, synthesis, lineage, promotion, operations):
    for command in group.COMMANDS:
        app.command()(command)


def main() -> None:
    try:
        app(args=expand_set_pairs(sys.argv[1:]))
    except GanopsError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


__all__ = ["app", "expand_set_pairs", "main"]
