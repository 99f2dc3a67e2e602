"""Promotion in the model registry: promote, approve, reject, roll back, withdraw; the ledger's history; reconcile."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from components.core.errors import GanopsError
from flows.cli.options import ProjectOpt, dataset_md5_of, prepare_env

ReasonOpt = typer.Option(..., "--reason", help="Why: kept in the promotion ledger with who and when.")
ModelArg = typer.Argument(..., help="Registered model name.")
EntryJsonOpt = typer.Option(False, "--json", help="Print the ledger entry as JSON.")


def _entry_out(entry, as_json: bool) -> None:
    """A ledger entry a command appended: as JSON, or as text with its rules as a table."""
    from dataclasses import asdict, replace

    from components.promotion.gate import format_rules
    from components.promotion.ledger import format_history
    from components.promotion.rules import RuleResult

    if as_json:
        typer.echo(json.dumps(asdict(entry), indent=2))
        return
    typer.echo(format_history([replace(entry, rules=[])]))
    if entry.rules:
        typer.echo("\n" + format_rules([RuleResult(**r) for r in entry.rules]))


def promote(
    model: str = ModelArg,
    version: str = typer.Argument(..., help="The version to make champion."),
    reason: str = ReasonOpt,
    force: bool = typer.Option(False, "--force", help="Promote even when the gate's rules fail (recorded as an override)."),
    as_json: bool = EntryJsonOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Make VERSION champion: the gate's rules on its recorded metrics against the champion's, its export verified
    (or rebuilt from the registry), a ledger entry, then the aliases."""
    root = prepare_env(project_dir)
    from components.promotion.actions import promote as promote_version
    from components.registry.tracking import client

    _entry_out(promote_version(client(root), root, model, version, reason, force), as_json)


def approve(
    model: str = ModelArg,
    version: str = typer.Argument(..., help="The candidate awaiting approval."),
    reason: str = ReasonOpt,
    as_json: bool = EntryJsonOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Make the candidate awaiting approval (gate.approval: required) champion: its rules checked again against
    the champion now, its export written and verified, a ledger entry, then the aliases."""
    root = prepare_env(project_dir)
    from components.promotion.actions import approve as approve_version
    from components.registry.tracking import client

    _entry_out(approve_version(client(root), root, model, version, reason), as_json)


def reject(
    model: str = ModelArg,
    version: str = typer.Argument(..., help="The candidate awaiting approval."),
    reason: str = ReasonOpt,
    as_json: bool = EntryJsonOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Turn down the candidate awaiting approval: it becomes the challenger, the champion stays."""
    root = prepare_env(project_dir)
    from components.promotion.actions import reject as reject_version
    from components.registry.tracking import client

    _entry_out(reject_version(client(root), model, version, reason), as_json)


def rollback(
    model: str = ModelArg,
    reason: str = ReasonOpt,
    to: str | None = typer.Option(None, "--to", help="A version that was champion before. Default: previous_champion."),
    as_json: bool = EntryJsonOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Champion back to the previous champion (or --to VERSION) in one step, its export verified or rebuilt."""
    root = prepare_env(project_dir)
    from components.promotion.actions import rollback as roll_back
    from components.registry.tracking import client

    _entry_out(roll_back(client(root), root, model, reason, to), as_json)


def history(
    model: str = ModelArg,
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Recompute the hash chain and compare the registry's aliases with the last entry; exit 2 naming the first problem.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the entries (newest first) as JSON."),
    project_dir: Path = ProjectOpt,
) -> None:
    """The promotion ledger of MODEL: every alias change ganops made, who, when, why, on what evidence."""
    root = prepare_env(project_dir)
    from dataclasses import asdict

    from components.promotion.actions import history as read_history
    from components.promotion.ledger import format_history
    from components.registry.tracking import client

    chain, problems = read_history(client(root), model)
    entries = list(reversed(chain.entries))
    typer.echo(
        json.dumps({"entries": [asdict(e) for e in entries], "problems": problems}, indent=2) if as_json else format_history(chain.entries)
    )
    if verify and problems:
        raise GanopsError(f"{model}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    if verify:
        typer.echo(f"verified: {len(chain.entries)} entries, hash chain intact, aliases as the last entry says")


def reconcile(
    model: str = ModelArg,
    as_json: bool = typer.Option(False, "--json", help="Print what was repaired as JSON."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Set MODEL's aliases to what the promotion ledger's last entry says (after a crash between the two)."""
    root = prepare_env(project_dir)
    from components.promotion.moves import reconcile as reconcile_aliases
    from components.registry.tracking import client

    moved = reconcile_aliases(client(root), model)
    if as_json:
        typer.echo(json.dumps({"model": model, "repaired": moved}))
    else:
        typer.echo("\n".join(f"repaired {m}" for m in moved) if moved else f"{model}: aliases agree with the ledger")


def withdraw(
    data: str = typer.Option(..., "--data", help="The bad dataset: a DVC md5, or a git revision of data.dvc."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the promotion ledger and on each version)."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Withdraw every model version trained on a dataset: its aliases removed, the champion moved back to the newest
    unaffected version that passed its gate (export verified), its export quarantined, all in the promotion ledger."""
    root = prepare_env(project_dir)
    from components.promotion.withdraw import withdraw as withdraw_versions
    from components.registry.tracking import client

    for w in withdraw_versions(client(root), root, dataset_md5_of(root, data), reason):
        typer.echo(
            f"withdrew {w.model} version {w.version}: aliases removed: {', '.join(w.aliases_removed) or 'none'}"
            + (
                f"; champion is now version {w.champion_now}"
                if w.champion_now
                else "; no champion left"
                if "champion" in w.aliases_removed
                else ""
            )
            + (f"; export quarantined in {w.export}" if w.export else "")
        )


COMMANDS = (promote, approve, reject, rollback, history, reconcile, withdraw)
