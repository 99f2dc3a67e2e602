"""The pipeline's steps one at a time: validate a dataset, run the retrain flow, train alone, compute FID."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import typer

from components.core.errors import GanopsError
from flows.cli.options import ConfigOpt, ProjectOpt, SetOpt, prepare_env


def validate(
    config: str | None = ConfigOpt,
    data: Path | None = typer.Option(None, "--data", help="Folder to validate. Default: the config's data.dir."),
    project_dir: Path = ProjectOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate a dataset folder with the config's Great Expectations suite; exit 1 when it fails."""
    root = prepare_env(project_dir)
    from components.core.paths import state_dir
    from components.presets import load_config
    from components.validation.results import format_failures
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


def run(
    config: str | None = ConfigOpt,
    steps: int | None = typer.Option(None, "--steps", min=1, help="Override train.steps."),
    seed: int | None = typer.Option(None, "--seed", help="Override seed."),
    data_rev: str | None = typer.Option(None, "--data-rev", help="Train on data.dvc as of this git revision (data.revision)."),
    set_: list[str] = SetOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Run the retrain flow: dataset version, validate, train, evaluate, register, gate, export."""
    root = prepare_env(project_dir)
    from components.config import export_root
    from components.presets import check_output_paths, load_config

    overrides = (
        list(set_)
        + ([f"train.steps={steps}"] if steps else [])
        + ([f"seed={seed}"] if seed is not None else [])
        + ([f"data.revision={json.dumps(data_rev)}"] if data_rev else [])
    )  # quoted: a hex revision is not a number
    cfg = check_output_paths(load_config(config, overrides), root)
    from components.core.paths import state_dir
    from components.lineage.summary import format_run_summary
    from components.orchestration.local_server import prefect_api

    # A temporary server dies with this process; the flow's imports (about 7 s) overlap its start.
    with prefect_api(state_dir(root) / "prefect" / "server.log", meanwhile=lambda: importlib.import_module("flows.retrain")):
        from flows.retrain import retrain

        summary = retrain(config=cfg, project_dir=str(root))
    typer.echo("\n" + format_run_summary(summary, export_root(cfg, root)))


def train(
    config: str | None = ConfigOpt,
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Override train.steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest valid checkpoint in OUT/checkpoints."),
    out: Path | None = typer.Option(None, "--out", help="Output folder. Default: .ganops/train/<config name>."),
    data: Path | None = typer.Option(None, "--data", help="ImageFolder to train on. Default: the config's data.dir."),
    set_: list[str] = SetOpt,
    validate: bool = typer.Option(
        True,
        "--validate/--no-validate",
        help="Validate the data first, as the flow does (the flow's own training process skips it: the flow validated already).",
    ),
    in_memory: bool = typer.Option(
        False,
        "--in-memory",
        help="Decode the images into memory instead of the memory-mapped cache in .ganops/cache/images (built once per dataset content).",
    ),
    dataset_md5: str | None = typer.Option(
        None,
        "--dataset-md5",
        help="DVC's md5 of the --data folder, checked by the "
        "caller (the flows pass it): the cache is keyed by it instead of the files' times.",
    ),
    project_dir: Path = ProjectOpt,
) -> None:
    """Train a generator alone (no registry): checkpoints, samples, loss plot and generator.safetensors in OUT.

    Runs under torchrun too: `torchrun --nproc-per-node 2 -m flows.cli train ...` trains with DDP.
    """
    root = prepare_env(project_dir)
    from components.core.paths import check_writable, state_dir
    from components.core.progress import progress_bar
    from components.presets import load_config
    from components.training.job import image_cache_dir, train_to_files, validate_and_train

    cfg = load_config(config, list(set_) + ([f"train.steps={max_steps}"] if max_steps else []))
    out_dir = check_writable((out or state_dir(root) / "train" / cfg.name).resolve(), "--out")
    folder = (data or root / cfg.data.dir).resolve()
    if not folder.is_dir():
        raise GanopsError(f"dataset folder {folder} does not exist")
    cache = None if in_memory else image_cache_dir(root)
    if validate:
        result = validate_and_train(
            folder, cfg, out_dir, state_dir(root), progress=progress_bar, resume=resume, cache_dir=cache, dataset_md5=dataset_md5
        )
    else:
        result = train_to_files(folder, cfg, out_dir, progress=progress_bar, resume=resume, cache_dir=cache, dataset_md5=dataset_md5)
    if result is not None:  # only rank 0 writes the result (and draws the bar)
        typer.echo(
            f"trained {cfg.train.arch}/{cfg.train.loss} to step {result.steps} (resumed from {result.resumed_from}) "
            f"in {result.seconds:.1f} s on {result.device} x{result.world_size}: {result.weights}"
        )


def fid(
    a: str = typer.Argument(
        ..., help="A folder of images, an .npz with mu and sigma, or a registered model (NAME@ALIAS, models:/NAME/VERSION)."
    ),
    b: str = typer.Argument(..., help="The second source, any of the same kinds."),
    num_samples: int = typer.Option(10_000, "--num-samples", min=2, help="Images drawn from a generator source."),
    batch_size: int = typer.Option(0, "--batch-size", min=0, help="Images per Inception batch (0: 256 on a GPU, 50 on CPU)."),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="fp32 (default), or tf32 on a recent NVIDIA GPU: about twice as "
        "fast, features within 0.004 of fp32's (its cached statistics are kept apart).",
    ),
    extra: bool = typer.Option(False, "--extra", help="Also KID and precision/recall (k=3) from a sample of up to --keep features."),
    keep: int = typer.Option(5000, "--keep", min=0, help="Features kept per side for --extra and --bootstrap."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Rounds of a bootstrap 95% interval for FID (0: none)."),
    weights: str | None = typer.Option(
        None, "--weights", help="FID Inception weights file (default: see docs/configuration.md, 'Inception weights')."
    ),
    save_a: Path | None = typer.Option(None, "--save-stats", help="Write A's statistics to this .npz."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Standard Inception FID (TF Inception-v3 2015-12-05, pool3) between two sources."""
    root = prepare_env(project_dir)
    from components.core.names import FID_INCEPTION
    from components.core.paths import state_dir
    from components.evaluation.fid_between import fid_between

    result = fid_between(
        a, b, root, state_dir(root) / "cache", num_samples, batch_size, extra, keep, bootstrap, weights, seed, save_a, precision
    )
    typer.echo(json.dumps(result) if as_json else f"{FID_INCEPTION} {result[FID_INCEPTION]:.4f}")


COMMANDS = (validate, run, train, fid)
