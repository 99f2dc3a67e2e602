"""`ganops` command line. Heavy libraries are imported inside commands so `--help` is instant.

Every GanopsError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from components.errors import GanopsError

app = typer.Typer(help="MLOps for GAN generators: DVC data, validation, training, FID, registry, gates, export.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Create, import and restore dataset versions (tracked with DVC).", no_args_is_help=True)
app.add_typer(data_app, name="data")

ProjectOpt = typer.Option(Path("."), "--project-dir", "-C", help="Project folder holding data.dvc and .dvc/.", file_okay=False)
ConfigOpt = typer.Option(None, "--config", "-c", help="Preset name (digits, smoke) or a YAML file. Default: digits.")


def _prepare_env(project_dir: Path) -> Path:
    """Point every tool's local state into the project's state folder and turn telemetry off (before imports)."""
    from components.config import state_dir

    root = project_dir.resolve()
    home = state_dir(root)
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
    from components.atomic import replace_folder
    from components.data import build_from_source
    from components.versioning import dvc_add_and_push

    count = replace_folder(build_from_source(source), root / data_dir)
    entry = dvc_add_and_push(root, data_dir)
    typer.echo(f"imported {count} files into {data_dir}/ (md5 {entry['md5']}); commit {data_dir}.dvc to record this version")


@data_app.command("ensure")
def data_ensure(project_dir: Path = ProjectOpt, data_dir: str = typer.Option("data", help="Dataset folder.")) -> None:
    """Make sure the dataset data.dvc names is present: keep it, pull it from the DVC remote, or rebuild the digits set."""
    root = _prepare_env(project_dir)
    from components.atomic import replace_folder
    from components.data import DIGITS, write_digits
    from components.errors import DataError
    from components.versioning import dvc_add_and_push, dvc_pull, read_dvc_file

    dvc_file = f"{data_dir}.dvc"
    if (root / data_dir).is_dir():
        typer.echo(f"{data_dir}/ present")
        return
    wanted = read_dvc_file(root / dvc_file) if (root / dvc_file).is_file() else None
    if wanted and dvc_pull(root, dvc_file):
        typer.echo(f"pulled {data_dir}/ (md5 {wanted['md5']}) from the DVC remote")
        return
    old_text = (root / dvc_file).read_text() if wanted else None
    replace_folder(write_digits, root / data_dir)
    entry = dvc_add_and_push(root, data_dir)
    if wanted and entry["md5"] != wanted["md5"]:
        import shutil

        (root / dvc_file).write_text(old_text)
        shutil.rmtree(root / data_dir)
        raise DataError(f"{dvc_file} tracks md5 {wanted['md5']}, which the DVC remote lacks and which is not the bundled "
                        f"{DIGITS} set ({entry['md5']}); configure the remote that holds it and run `dvc pull {dvc_file}`")
    typer.echo(f"recreated the {DIGITS} dataset in {data_dir}/ (md5 {entry['md5']}) and pushed it to the DVC remote")


@app.command()
def validate(
    config: Optional[str] = ConfigOpt,
    data: Optional[Path] = typer.Option(None, "--data", help="Folder to validate. Default: the config's data.dir."),
    project_dir: Path = ProjectOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate a dataset folder with the config's Great Expectations suite; exit 1 when it fails."""
    root = _prepare_env(project_dir)
    from components.config import load_config, state_dir
    from components.validation import format_failures, validate_folder

    cfg = load_config(config)
    folder = data if data is not None else root / cfg.data.dir
    if not folder.is_dir():
        raise GanopsError(f"dataset folder {folder} does not exist")
    report, _ = validate_folder(folder, cfg.validation, state_dir(root))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif report["success"]:
        typer.echo(f"validation passed: {report['images']} images in {folder}")
    else:
        typer.echo(f"validation FAILED for {folder}: {format_failures(report)}", err=True)
    if not as_json:
        for finding in report["drift"]["findings"]:
            typer.echo(f"drift ({report['drift']['policy']}): {finding}", err=True)
        if report["data_docs"]:
            typer.echo(f"data docs: {report['data_docs']}")
    raise typer.Exit(0 if report["success"] else 1)


@app.command()
def run(
    config: Optional[str] = ConfigOpt,
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Override train.steps."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override seed."),
    data_rev: Optional[str] = typer.Option(None, "--data-rev", help="Train on data.dvc as of this git revision (data.revision)."),
    set_: list[str] = typer.Option([], "--set", help="Override any key, e.g. --set gate.fid_ceiling=20 (repeatable)."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Run the retrain flow: dataset version, validate, train, evaluate, register, gate, export."""
    root = _prepare_env(project_dir)
    from components.config import export_root, load_config

    overrides = (list(set_) + ([f"train.steps={steps}"] if steps else []) + ([f"seed={seed}"] if seed is not None else [])
                 + ([f"data.revision={json.dumps(data_rev)}"] if data_rev else []))  # quoted: a hex revision is not a number
    cfg = load_config(config, overrides)
    from flows.retrain import retrain
    from components.registry import tracking_uri

    summary = retrain(config=cfg, project_dir=str(root))
    uri = tracking_uri(root)
    typer.echo("")
    typer.echo(f"model     {summary['model_name']} version {summary['version']}: "
               f"{'promoted to champion' if summary['decision']['promote'] else 'challenger (not promoted)'}")
    typer.echo(f"fid       {summary['scores']['fid_domain']:.3f} (fid_domain; real-vs-real floor {summary['scores']['fid_domain_real_split']:.3f})")
    typer.echo(f"export    {summary['export'] or 'none (the gate did not promote this version)'}")
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
    set_: list[str] = typer.Option([], "--set", help="Override any key, e.g. --set train.loss=hinge (repeatable)."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Train a generator alone (no registry): checkpoints, samples, loss plot and generator.safetensors in OUT.

    Runs under torchrun too: `torchrun --nproc-per-node 2 -m flows.cli train ...` trains with DDP.
    """
    root = _prepare_env(project_dir)
    from components.config import load_config, state_dir
    from components.train_job import progress_bar, train_to_files
    from components.training import dist_info

    cfg = load_config(config, list(set_) + ([f"train.steps={max_steps}"] if max_steps else []))
    out_dir = (out or state_dir(root) / "train" / cfg.name).resolve()
    result = train_to_files((data or root / cfg.data.dir).resolve(), cfg, out_dir, progress=progress_bar, resume=resume)
    if dist_info()[0] == 0:  # only rank 0 writes the result (and draws the bar)
        typer.echo(f"trained {cfg.train.arch}/{cfg.train.loss} to step {result['steps']} (resumed from {result['resumed_from']}) "
                   f"in {result['seconds']:.1f} s on {result['device']} x{result['world_size']}: {result['weights']}")


@app.command()
def fid(
    a: str = typer.Argument(..., help="A folder of images, an .npz with mu and sigma, or a registered model (NAME@ALIAS, models:/NAME/VERSION)."),
    b: str = typer.Argument(..., help="The second source, any of the same kinds."),
    num_samples: int = typer.Option(10_000, "--num-samples", min=2, help="Images drawn from a generator source."),
    batch_size: int = typer.Option(50, "--batch-size", min=1, help="Images per Inception batch."),
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
    from components.config import state_dir
    from components.fid_sources import FID_INCEPTION, compare, inception_extractor, resolve_source, source_stats
    from components.stats import save_stats

    extractor = inception_extractor(weights, state_dir(root) / "cache" / "inception", batch_size)
    keep_n = keep if (extra or bootstrap) else 0
    sa, fa = source_stats(*resolve_source(a, root), extractor, num_samples, seed, keep_n)
    sb, fb = source_stats(*resolve_source(b, root), extractor, num_samples, seed + 1, keep_n)
    if save_a is not None:
        save_stats(save_a, *sa, source=a, extractor=extractor.name)
    result = compare(sa, fa, sb, fb, extra, bootstrap)
    typer.echo(json.dumps(result) if as_json else f"{FID_INCEPTION} {result[FID_INCEPTION]:.4f}")


@app.command()
def lineage(
    model: str = typer.Argument(..., help="MODEL, MODEL@ALIAS or MODEL@VERSION (default alias: champion)."),
    project_dir: Path = ProjectOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the chain as JSON."),
) -> None:
    """Show export files -> model version -> training run -> dataset md5 and revision -> validation result."""
    root = _prepare_env(project_dir)
    from components import registry
    from components.lineage import format_lineage, resolve_lineage

    name, _, ref = model.partition("@")
    chain = resolve_lineage(registry.client(root), name, ref or None)
    typer.echo(json.dumps(chain, indent=2) if as_json else format_lineage(chain))


def main() -> None:
    try:
        app()
    except GanopsError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
