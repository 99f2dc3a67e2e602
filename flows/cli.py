"""`ganops` command line. Heavy libraries are imported inside commands so `--help` is instant.

Every GanopsError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Optional

import typer

from components.core.errors import GanopsError

app = typer.Typer(help="MLOps for GAN generators: DVC data, validation, training, FID, registry, gates, export.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Create, import and restore dataset versions (tracked with DVC).", no_args_is_help=True)
app.add_typer(data_app, name="data")

ProjectOpt = typer.Option(Path("."), "--project-dir", "-C", help="Project folder holding data.dvc and .dvc/.", file_okay=False)
ConfigOpt = typer.Option(None, "--config", "-c", help="Preset name (digits, smoke) or a YAML file. Default: digits.")
SetOpt = typer.Option([], "--set", help="Override keys: --set train.steps=100 gate.rules.ceiling.value=20 (several pairs after one "
                                        "--set, or --set repeated).")
OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


def _prepare_env(project_dir: Path) -> Path:
    """Point every tool's local state into the project's state folder (created if missing) and turn telemetry off
    (before imports)."""
    from components.core.paths import state_dir

    root = project_dir.resolve()
    home = state_dir(root)
    try:
        (home / "prefect").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GanopsError(f"state folder {home} (GANOPS_HOME or {root}/.ganops) cannot be created: {e.strerror}") from None
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return root


@data_app.command("import")
def data_import(
    source: str = typer.Argument(..., help="'digits' (scikit-learn's bundled 8x8 digits), an ImageFolder directory "
                                 "<dir>/<label>/<image>, an .npz with x and y arrays, or s3://bucket/prefix."),
    project_dir: Path = ProjectOpt,
    data_dir: str = typer.Option("data", help="Dataset folder inside the project, tracked by <data-dir>.dvc."),
) -> None:
    """Write SOURCE as the project's dataset, track it with DVC and push it to the DVC remote."""
    root = _prepare_env(project_dir)
    from components.data.versioning import import_dataset

    count, entry = import_dataset(root, source, data_dir)
    typer.echo(f"imported {count} files into {data_dir}/ (md5 {entry['md5']}); commit {data_dir}.dvc to record this version")
    from components.orchestration.events import DATASET_UPDATED, emit_dataset_updated

    if emit_dataset_updated(root, entry["md5"], data_dir, count):
        typer.echo(f"event {DATASET_UPDATED} sent to {os.environ['PREFECT_API_URL']}")


@data_app.command("ensure")
def data_ensure(project_dir: Path = ProjectOpt, data_dir: str = typer.Option("data", help="Dataset folder.")) -> None:
    """Make sure the dataset data.dvc names is present: keep it, pull it from the DVC remote, or rebuild the digits set."""
    root = _prepare_env(project_dir)
    from components.data.versioning import ensure_dataset

    typer.echo(ensure_dataset(root, data_dir))


@app.command()
def validate(
    config: Optional[str] = ConfigOpt,
    data: Optional[Path] = typer.Option(None, "--data", help="Folder to validate. Default: the config's data.dir."),
    project_dir: Path = ProjectOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate a dataset folder with the config's Great Expectations suite; exit 1 when it fails."""
    root = _prepare_env(project_dir)
    from components.config import load_config
    from components.core.paths import state_dir
    from components.validation.report import format_failures
    from components.validation.validate import validate_folder

    cfg = load_config(config)
    folder = data if data is not None else root / cfg.data.dir
    if not folder.is_dir():
        raise GanopsError(f"dataset folder {folder} does not exist")
    report = validate_folder(folder, cfg.validation, state_dir(root))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    elif report.success:
        typer.echo(f"validation passed: {report.images} images in {folder}")
    else:
        typer.echo(f"validation FAILED for {folder}: {format_failures(report)}", err=True)
    if not as_json:
        for finding in report.drift.findings:
            typer.echo(f"drift ({report.drift.policy}): {finding}", err=True)
        if report.data_docs:
            typer.echo(f"data docs: {report.data_docs}")
    raise typer.Exit(0 if report.success else 1)


@app.command()
def run(
    config: Optional[str] = ConfigOpt,
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Override train.steps."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override seed."),
    data_rev: Optional[str] = typer.Option(None, "--data-rev", help="Train on data.dvc as of this git revision (data.revision)."),
    set_: list[str] = SetOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Run the retrain flow: dataset version, validate, train, evaluate, register, gate, export."""
    root = _prepare_env(project_dir)
    from components.config import export_root, load_config

    overrides = (list(set_) + ([f"train.steps={steps}"] if steps else []) + ([f"seed={seed}"] if seed is not None else [])
                 + ([f"data.revision={json.dumps(data_rev)}"] if data_rev else []))  # quoted: a hex revision is not a number
    cfg = load_config(config, overrides)
    from components.core.names import FID_DOMAIN, FID_DOMAIN_REAL_SPLIT
    from components.core.paths import state_dir
    from components.orchestration.local_server import prefect_api

    # A temporary server dies with this process; the flow's imports (about 7 s) overlap its start.
    with prefect_api(state_dir(root) / "prefect" / "server.log", meanwhile=lambda: importlib.import_module("flows.retrain")):
        from flows.retrain import retrain

        summary = retrain(config=cfg, project_dir=str(root))
    uri, metrics, metric = summary["tracking_uri"], summary["scores"]["metrics"], summary["gate_metric"]
    floor = f"; real-vs-real floor {metrics[FID_DOMAIN_REAL_SPLIT]:.3f}" if metric == FID_DOMAIN else ""
    typer.echo("")
    verdict = {"promote": "promoted to champion", "reject": "challenger (not promoted)",
               "await_approval": f"candidate, awaiting approval (ganops approve {summary['model_name']} {summary['version']} --reason ...)"
               }[summary["decision"]["verdict"]]
    if summary["reused_version"]:
        then = {"promote": "promoted", "reject": "rejected", "await_approval": "awaiting approval"}[summary["decision"]["verdict"]]
        verdict = (f"registered before from the same data, settings and code ({then}"
                   f" then); nothing new was {'trained or ' if summary['reused_training'] else ''}registered")
    typer.echo(f"model     {summary['model_name']} version {summary['version']}: {verdict}")
    typer.echo(f"fid       {metrics[metric]:.3f} ({metric}{floor})")
    waiting = summary["decision"]["verdict"] == "await_approval"
    typer.echo(f"export    {summary['export'] or ('none yet: written when approved' if waiting else 'none (the gate did not promote this version)')}")
    if summary["decision"]["rules"]:
        from components.promotion.gate import format_rules
        from components.promotion.rules import RuleResult

        typer.echo("gate      " + format_rules([RuleResult(**r) for r in summary["decision"]["rules"]]).replace("\n", "\n          "))
    typer.echo(f"lineage   ganops lineage {summary['model_name']}@champion")
    typer.echo(f"mlflow ui mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else f"mlflow    {uri}")
    typer.echo(f"exports   {export_root(cfg, root)}")


@app.command()
def train(
    config: Optional[str] = ConfigOpt,
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Override train.steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest valid checkpoint in OUT/checkpoints."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder. Default: .ganops/train/<config name>."),
    data: Optional[Path] = typer.Option(None, "--data", help="ImageFolder to train on. Default: the config's data.dir."),
    set_: list[str] = SetOpt,
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Validate the data first, as the flow does "
                                  "(the flow's own training process skips it: the flow validated already)."),
    in_memory: bool = typer.Option(False, "--in-memory", help="Decode the images into memory instead of the "
                                   "memory-mapped cache in .ganops/cache/images (built once per dataset content)."),
    dataset_md5: Optional[str] = typer.Option(None, "--dataset-md5", help="DVC's md5 of the --data folder, checked by the "
                                              "caller (the flows pass it): the cache is keyed by it instead of the files' times."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Train a generator alone (no registry): checkpoints, samples, loss plot and generator.safetensors in OUT.

    Runs under torchrun too: `torchrun --nproc-per-node 2 -m flows.cli train ...` trains with DDP.
    """
    root = _prepare_env(project_dir)
    from components.config import load_config
    from components.core.paths import state_dir
    from components.core.progress import progress_bar
    from components.training.job import image_cache_dir, train_to_files, validate_and_train

    cfg = load_config(config, list(set_) + ([f"train.steps={max_steps}"] if max_steps else []))
    out_dir = (out or state_dir(root) / "train" / cfg.name).resolve()
    folder = (data or root / cfg.data.dir).resolve()
    if not folder.is_dir():
        raise GanopsError(f"dataset folder {folder} does not exist")
    cache = None if in_memory else image_cache_dir(root)
    if validate:
        result = validate_and_train(folder, cfg, out_dir, state_dir(root), progress=progress_bar, resume=resume, cache_dir=cache,
                                    dataset_md5=dataset_md5)
    else:
        result = train_to_files(folder, cfg, out_dir, progress=progress_bar, resume=resume, cache_dir=cache, dataset_md5=dataset_md5)
    if result is not None:  # only rank 0 writes the result (and draws the bar)
        typer.echo(f"trained {cfg.train.arch}/{cfg.train.loss} to step {result.steps} (resumed from {result.resumed_from}) "
                   f"in {result.seconds:.1f} s on {result.device} x{result.world_size}: {result.weights}")


@app.command()
def fid(
    a: str = typer.Argument(..., help="A folder of images, an .npz with mu and sigma, or a registered model (NAME@ALIAS, models:/NAME/VERSION)."),
    b: str = typer.Argument(..., help="The second source, any of the same kinds."),
    num_samples: int = typer.Option(10_000, "--num-samples", min=2, help="Images drawn from a generator source."),
    batch_size: int = typer.Option(0, "--batch-size", min=0, help="Images per Inception batch (0: 256 on a GPU, 50 on CPU)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 (default), or tf32 on a recent NVIDIA GPU: about twice as "
                                            "fast, features within 0.004 of fp32's (its cached statistics are kept apart)."),
    extra: bool = typer.Option(False, "--extra", help="Also KID and precision/recall (k=3) from a sample of up to --keep features."),
    keep: int = typer.Option(5000, "--keep", min=0, help="Features kept per side for --extra and --bootstrap."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Rounds of a bootstrap 95% interval for FID (0: none)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="FID Inception weights file (default: see README)."),
    save_a: Optional[Path] = typer.Option(None, "--save-stats", help="Write A's statistics to this .npz."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Standard Inception FID (TF Inception-v3 2015-12-05, pool3) between two sources."""
    root = _prepare_env(project_dir)
    from components.core.names import FID_INCEPTION
    from components.core.paths import state_dir
    from components.evaluation.sources import fid_between

    result = fid_between(a, b, root, state_dir(root) / "cache", num_samples, batch_size, extra, keep, bootstrap, weights,
                         seed, save_a, precision)
    typer.echo(json.dumps(result) if as_json else f"{FID_INCEPTION} {result[FID_INCEPTION]:.4f}")


@app.command()
def generate(
    source: str = typer.Argument(..., help="MODEL@ALIAS, MODEL@VERSION, an export folder, or s3://.../MODEL/vN (verified first)."),
    n: int = typer.Option(..., "-n", help="Images per class (all classes of a conditional model, or those of --class); "
                          "in all for an unconditional one."),
    out: Path = typer.Option(..., "--out", help="Folder to write: <label>/<i>.png (or images.npz) and .synthetic.json.", file_okay=False),
    classes: list[str] = typer.Option([], "--class", help="A class name of the model's dataset (repeat for several)."),
    seed: int = typer.Option(0, "--seed", help="The same seed gives the same bytes."),
    fmt: str = typer.Option("png", "--format", help="png (an ImageFolder) or npz (x uint8 N,H,W,C and y label names)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Sample a registered generator or an export: N images per class with a manifest (model, version, weights
    sha256, seed, every file's sha256)."""
    root = _prepare_env(project_dir)
    from components.synthesis.commands import generate_images

    result = generate_images(root, source, n, list(classes) or None, seed, out.resolve(), fmt, force)
    g = result.manifest["generator"]
    counts = ", ".join(f"{label or 'all'}: {count}" for label, count in result.manifest["counts"].items())
    typer.echo(f"wrote {len(result.files)} file(s) of {g['model']} version {g['version']} (seed {seed}; {counts}) to {out}")


@app.command()
def rebalance(
    model: str = typer.Option(..., "--model", help="The class-conditional generator: MODEL@ALIAS or MODEL@VERSION (or an export folder)."),
    data: Path = typer.Option(..., "--data", help="The real, imbalanced ImageFolder.", file_okay=False),
    out: Path = typer.Option(..., "--out", help="Where to write the rebalanced ImageFolder.", file_okay=False),
    target: str = typer.Option("max", "--target", help="'max' (the largest class's count) or images per class."),
    max_fraction: Optional[float] = typer.Option(None, "--max-synthetic-fraction", min=0.0, max=1.0,
                                                 help="Most of any class that may be synthetic (synthesis.max_synthetic_fraction)."),
    classes: list[str] = typer.Option([], "--class", help="Only this class (repeat for several). Default: every class under the target."),
    do_import: bool = typer.Option(False, "--import", help="Then make it the project's dataset: a new DVC version (commit data.dvc)."),
    config: Optional[str] = typer.Option("cdcgan", "--config", "-c", help="Preset or YAML: its synthesis and validation sections apply."),
    set_: list[str] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Generate what each minority class lacks with a conditional generator that passes the quality check, write
    real + synthetic (named synthetic-*) as a new ImageFolder, validate it, and with --import version it with DVC."""
    root = _prepare_env(project_dir)
    from components.config import load_config
    from components.synthesis.quality import format_quality
    from components.synthesis.rebalance import format_plan, parse_target

    cfg = load_config(config, list(set_) + ([f"synthesis.max_synthetic_fraction={max_fraction}"] if max_fraction is not None else []))
    from components.synthesis.commands import rebalance as rebalance_data

    result = rebalance_data(root, model, data.resolve(), out.resolve(), parse_target(target), cfg, do_import,
                            data_dir=cfg.data.dir, force=force, classes=list(classes) or None)
    typer.echo(format_quality(result.quality))
    typer.echo(f"wrote {out} ({result.validation.images} images, validation passed):\n{format_plan(result.plan)}")
    if result.dataset:
        typer.echo(f"imported as {cfg.data.dir}/ (md5 {result.dataset['md5']}); commit {cfg.data.dir}.dvc to record this version")


@app.command()
def lineage(
    model: str = typer.Argument(None, help="MODEL, MODEL@ALIAS or MODEL@VERSION (default alias: champion)."),
    data: str = typer.Option(None, "--data", help="Reverse lineage: the versions trained on this dataset (a DVC md5, "
                                                   "or a git revision of data.dvc)."),
    project_dir: Path = ProjectOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the chain as JSON."),
) -> None:
    """Show export files -> model version -> training run -> dataset md5 and revision -> validation result; with
    --data, every model version trained on that dataset; synthetic images back to their generator. Exit 1 when an export file does not match its manifest."""
    root = _prepare_env(project_dir)
    from components.lineage.chain import data_lineage, format_lineage, format_trained_on, lineage_of

    if (model is None) == (data is None):
        raise GanopsError("name a MODEL or --data REV|MD5 (one of the two)")
    if data is not None:
        found = data_lineage(root, dataset_md5_of(root, data))
        typer.echo(json.dumps(found, indent=2) if as_json else format_trained_on(found["dataset_md5"], found["versions"], found["synthetic"]))
        return
    chain = lineage_of(root, model)
    typer.echo(json.dumps(chain, indent=2) if as_json else format_lineage(chain))
    if chain["export"].get("hashes_ok") is False:
        raise typer.Exit(1)


@app.command()
def report(
    model: str = typer.Argument(..., help="The registered model."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write (self-contained)."),
    metric: str = typer.Option(None, "--metric", help="The metric to plot. Default: the newest version's gate metric."),
    project_dir: Path = ProjectOpt,
) -> None:
    """One HTML page: champion timeline, the metric per version with intervals, recent samples side by side, gate
    rules, the champion's audit, validation and drift."""
    root = _prepare_env(project_dir)
    from components.lineage.html_report import write_report
    from components.registry.tracking import client

    data = write_report(client(root), root, model, out.resolve(), metric)
    typer.echo(f"wrote {out} ({len(data.versions)} versions, {len(data.ledger)} ledger entries)")


@app.command()
def withdraw(
    data: str = typer.Option(..., "--data", help="The bad dataset: a DVC md5, or a git revision of data.dvc."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the promotion ledger and on each version)."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Withdraw every model version trained on a dataset: its aliases removed, the champion moved back to the newest
    unaffected version that passed its gate (export verified), its export quarantined, all in the promotion ledger."""
    root = _prepare_env(project_dir)
    from components.promotion.withdraw import withdraw as withdraw_versions
    from components.registry.tracking import client

    for w in withdraw_versions(client(root), root, dataset_md5_of(root, data), reason):
        typer.echo(f"withdrew {w.model} version {w.version}: aliases removed: {', '.join(w.aliases_removed) or 'none'}"
                   + (f"; champion is now version {w.champion_now}" if w.champion_now else "; no champion left" if "champion" in w.aliases_removed else "")
                   + (f"; export quarantined in {w.export}" if w.export else ""))


def dataset_md5_of(root: Path, text: str) -> str:
    """--data as a dataset md5 (a revision is read through data.dvc)."""
    from components.data.versioning import dataset_md5_of as md5_of

    return md5_of(root, "data.dvc", text)


@app.command()
def audit(
    model: str = typer.Argument(..., help="MODEL, MODEL@ALIAS or MODEL@VERSION (default alias: champion)."),
    project_dir: Path = ProjectOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the links as JSON."),
    reproduce: bool = typer.Option(False, "--reproduce", help="Also retrain from the recorded config, data and code "
                                   "(a temporary git worktree, a fresh process) and compare the weights bitwise."),
) -> None:
    """Re-verify every link from the export back to the weights, model code, config, data (recomputed from DVC),
    validation report, code commit and promotion ledger. Exit 1 naming the first broken link."""
    root = _prepare_env(project_dir)
    from components.lineage.audit import audit_version, format_audit
    from components.registry.tracking import client

    result = audit_version(client(root), root, model, reproduce)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_audit(result))
    if result.first_failure is not None:
        raise typer.Exit(1)


@app.command()
def doctor(project_dir: Path = ProjectOpt) -> None:
    """Find runs a killed process left RUNNING on this host and mark them: MLflow run FAILED, flow run Crashed."""
    root = _prepare_env(project_dir)
    from components.core.paths import state_dir
    from components.orchestration.local_server import prefect_api
    from components.orchestration.reaper import reap

    with prefect_api(state_dir(root) / "prefect" / "server.log"):
        reaped = reap(root)
    for dead in reaped:
        typer.echo(f"MLflow run {dead.run_id}: FAILED (process {dead.pid} is gone); flow run {dead.flow_run_id}: "
                   f"{'Crashed' if dead.flow_run_marked else 'not running'}")
    typer.echo(f"{len(reaped)} orphaned run(s) marked" if reaped else "no orphaned runs")


@app.command()
def deploy(project_dir: Path = ProjectOpt) -> None:
    """Create the work pools (when missing) and the deployments of infra/prefect.yaml on the Prefect server that
    PREFECT_API_URL names, for this project. Safe to run again."""
    root = _prepare_env(project_dir)
    from components.orchestration.deploy import deploy as deploy_project

    created, plan = deploy_project(root)
    for pool, kind in plan.pools.items():
        typer.echo(f"work pool {pool} ({kind}): {'created' if pool in created else 'exists'}")
    for model in sorted(plan.models):
        typer.echo(f"one retrain at a time for {model}")
    for name in plan.deployments:
        typer.echo(f"deployment {name}")
    typer.echo(f"start a worker: prefect worker start --pool {next(iter(plan.pools))}")


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


@app.command()
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
    root = _prepare_env(project_dir)
    from components.promotion.commands import promote as promote_version
    from components.registry.tracking import client

    _entry_out(promote_version(client(root), root, model, version, reason, force), as_json)


@app.command()
def approve(
    model: str = ModelArg,
    version: str = typer.Argument(..., help="The candidate awaiting approval."),
    reason: str = ReasonOpt,
    as_json: bool = EntryJsonOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Make the candidate awaiting approval (gate.approval: required) champion: its rules checked again against
    the champion now, its export written and verified, a ledger entry, then the aliases."""
    root = _prepare_env(project_dir)
    from components.promotion.commands import approve as approve_version
    from components.registry.tracking import client

    _entry_out(approve_version(client(root), root, model, version, reason), as_json)


@app.command()
def reject(
    model: str = ModelArg,
    version: str = typer.Argument(..., help="The candidate awaiting approval."),
    reason: str = ReasonOpt,
    as_json: bool = EntryJsonOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Turn down the candidate awaiting approval: it becomes the challenger, the champion stays."""
    root = _prepare_env(project_dir)
    from components.promotion.commands import reject as reject_version
    from components.registry.tracking import client

    _entry_out(reject_version(client(root), model, version, reason), as_json)


@app.command()
def rollback(
    model: str = ModelArg,
    reason: str = ReasonOpt,
    to: Optional[str] = typer.Option(None, "--to", help="A version that was champion before. Default: previous_champion."),
    as_json: bool = EntryJsonOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Champion back to the previous champion (or --to VERSION) in one step, its export verified or rebuilt."""
    root = _prepare_env(project_dir)
    from components.promotion.commands import rollback as roll_back
    from components.registry.tracking import client

    _entry_out(roll_back(client(root), root, model, reason, to), as_json)


@app.command()
def history(
    model: str = ModelArg,
    verify: bool = typer.Option(False, "--verify", help="Recompute the hash chain and compare the registry's aliases "
                                "with the last entry; exit 2 naming the first problem."),
    as_json: bool = typer.Option(False, "--json", help="Print the entries (newest first) as JSON."),
    project_dir: Path = ProjectOpt,
) -> None:
    """The promotion ledger of MODEL: every alias change ganops made, who, when, why, on what evidence."""
    root = _prepare_env(project_dir)
    from dataclasses import asdict

    from components.promotion.commands import history as read_history
    from components.promotion.ledger import format_history
    from components.registry.tracking import client

    chain, problems = read_history(client(root), model)
    entries = list(reversed(chain.entries))
    typer.echo(json.dumps({"entries": [asdict(e) for e in entries], "problems": problems}, indent=2) if as_json
               else format_history(chain.entries))
    if verify and problems:
        raise GanopsError(f"{model}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    if verify:
        typer.echo(f"verified: {len(chain.entries)} entries, hash chain intact, aliases as the last entry says")


@app.command()
def reconcile(
    model: str = ModelArg,
    as_json: bool = typer.Option(False, "--json", help="Print what was repaired as JSON."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Set MODEL's aliases to what the promotion ledger's last entry says (after a crash between the two)."""
    root = _prepare_env(project_dir)
    from components.promotion.moves import reconcile as reconcile_aliases
    from components.registry.tracking import client

    moved = reconcile_aliases(client(root), model)
    if as_json:
        typer.echo(json.dumps({"model": model, "repaired": moved}))
    else:
        typer.echo("\n".join(f"repaired {m}" for m in moved) if moved else f"{model}: aliases agree with the ledger")


@app.command()
def serve(
    source: str = typer.Argument(..., help="MODEL@ALIAS, MODEL@VERSION, an export folder, or an export in S3 (s3://bucket/prefix/MODEL/vN)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    runtime: str = typer.Option("torchscript", "--runtime", help="torchscript or onnx: the export file to load."),
    follow: bool = typer.Option(False, "--follow", help="Swap in the export the alias points at when it moves (verified first)."),
    poll_s: float = typer.Option(5.0, "--poll-s", min=0.1, help="How often --follow looks at the alias (seconds)."),
    max_n: int = typer.Option(256, "--max-n", min=1, help="Most images one request may ask for."),
    max_body_bytes: int = typer.Option(65536, "--max-body-bytes", min=64, help="Largest request body accepted."),
    batch_wait_ms: float = typer.Option(0.0, "--batch-wait-ms", min=0.0, help="How long a request waits for others to share its "
                                        "forward pass (0: only those already waiting; under load that is plenty)."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Serve a verified export over HTTP: POST /v1/generate, GET /v1/model, /healthz, /readyz, /metrics."""
    root = _prepare_env(project_dir)
    import logging

    import uvicorn

    from components.core.paths import state_dir
    from components.registry.tracking import client
    from components.serving.app import ServeSettings
    from components.serving.service import build_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServeSettings(max_n=max_n, max_body_bytes=max_body_bytes, batch_wait_ms=batch_wait_ms)
    api = build_app(source, lambda: client(root), runtime, follow, settings, state_dir(root) / "serve", poll_s)
    uvicorn.run(api, host=host, port=port, log_level="info")


def expand_set_pairs(argv: list[str]) -> list[str]:
    """`--set a=1 b=2` -> `--set a=1 --set b=2`: every key=value after a --set belongs to it."""
    out, in_set, taken = [], False, 0
    for arg in argv:
        if arg == "--set":
            in_set, taken = True, 0
            continue
        if in_set and (taken == 0 or OVERRIDE.match(arg)):  # the first value always belongs to the --set
            out += ["--set", arg]
            taken += 1
            continue
        in_set = False
        out.append(arg)
    return out + (["--set"] if in_set and not taken else [])


def main() -> None:
    try:
        app(args=expand_set_pairs(sys.argv[1:]))
    except GanopsError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
