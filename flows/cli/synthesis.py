"""Synthetic data: sample a generator, rebalance a dataset's minority classes."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.options import ProjectOpt, SetOpt, prepare_env

MethodOpt = typer.Option(
    None,
    "--method",
    help="gan (generated images kept by a classifier's confidence), oversample (real ones repeated), smote, mix "
    "(repeated real + generated), auto (the benefit check's winner). Default: the preset's synthesis.method.",
)
CheckOpt = typer.Option(
    False,
    "--check",
    help="Run the benefit check (always with --method auto): classifiers trained on each method's set, scored "
    "on a validation split of --data, with paired 95% intervals.",
)
RequireBenefitOpt = typer.Option(
    False, "--require-benefit", help="With --method gan or mix: write nothing unless the check finds it beats oversampling and SMOTE."
)
MinConfidenceOpt = typer.Option(
    None, "--min-confidence", help="Keep a generated image when the classifier gives its class this probability (synthesis.min_confidence)."
)


def generate(
    source: str = typer.Argument(..., help="MODEL@ALIAS, MODEL@VERSION, an export folder, or s3://.../MODEL/vN (verified first)."),
    n: int = typer.Option(
        ..., "-n", help="Images per class (all classes of a conditional model, or those of --class); in all for an unconditional one."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write: <label>/<i>.png (or images.npz) and .synthetic.json.", file_okay=False),
    classes: list[str] = typer.Option([], "--class", help="A class name of the model's dataset (repeat for several)."),
    seed: int = typer.Option(0, "--seed", help="The same seed gives the same bytes."),
    fmt: str = typer.Option("png", "--format", help="png (an ImageFolder) or npz (x uint8 N,H,W,C and y label names)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
    project_dir: Path = ProjectOpt,
) -> None:
    """Sample a registered generator or an export: N images per class with a manifest (model, version, weights
    sha256, seed, every file's sha256)."""
    root = prepare_env(project_dir)
    from components.synthesis.synthesize import generate_images

    result = generate_images(root, source, n, list(classes) or None, seed, out.resolve(), fmt, force)
    g = result.manifest["generator"]
    counts = ", ".join(f"{label or 'all'}: {count}" for label, count in result.manifest["counts"].items())
    typer.echo(f"wrote {len(result.files)} file(s) of {g['model']} version {g['version']} (seed {seed}; {counts}) to {out}")


def rebalance(
    model: str | None = typer.Option(
        None,
        "--model",
        help="The class-conditional generator: MODEL@ALIAS or MODEL@VERSION (or an export folder). Needed by --method gan and "
        "mix; without it auto chooses between oversample and smote.",
    ),
    data: Path = typer.Option(..., "--data", help="The real, imbalanced ImageFolder.", file_okay=False),
    out: Path = typer.Option(..., "--out", help="Where to write the rebalanced ImageFolder.", file_okay=False),
    target: str = typer.Option("max", "--target", help="'max' (the largest class's count) or images per class."),
    max_fraction: float | None = typer.Option(
        None,
        "--max-synthetic-fraction",
        min=0.0,
        max=1.0,
        help="Most of any class that may be synthetic (synthesis.max_synthetic_fraction).",
    ),
    classes: list[str] = typer.Option([], "--class", help="Only this class (repeat for several). Default: every class under the target."),
    do_import: bool = typer.Option(False, "--import", help="Then make it the project's dataset: a new DVC version (commit data.dvc)."),
    config: str | None = typer.Option("cdcgan", "--config", "-c", help="Preset or YAML: its synthesis and validation sections apply."),
    set_: list[str] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
    method: str | None = MethodOpt,
    check: bool = CheckOpt,
    require_benefit: bool = RequireBenefitOpt,
    min_confidence: float | None = MinConfidenceOpt,
    project_dir: Path = ProjectOpt,
) -> None:
    """Fill each minority class up to the target (by generated images that pass the quality check and a classifier's
    confidence, repeated real ones, SMOTE or a mix; --method auto lets the benefit check choose), write real + added
    as a new ImageFolder with a manifest, validate it, and with --import version it with DVC."""
    root = prepare_env(project_dir)
    from components.presets import load_config
    from components.synthesis.rebalance import parse_target
    from components.synthesis.synthesize import format_rebalanced

    overrides = list(set_) + ([f"synthesis.max_synthetic_fraction={max_fraction}"] if max_fraction is not None else [])
    overrides += [f"synthesis.method={method}"] if method is not None else []
    overrides += [f"synthesis.min_confidence={min_confidence}"] if min_confidence is not None else []
    cfg = load_config(config, overrides)
    from components.synthesis.synthesize import rebalance as rebalance_data

    result = rebalance_data(
        root,
        model,
        data.resolve(),
        out.resolve(),
        parse_target(target),
        cfg,
        do_import,
        data_dir=cfg.data.dir,
        force=force,
        classes=list(classes) or None,
        check=check,
        require_benefit=require_benefit,
        progress=lambda line: typer.echo(line, err=True),
    )
    typer.echo(format_rebalanced(result))
    if result.dataset:
        typer.echo(f"imported as {cfg.data.dir}/ (md5 {result.dataset['md5']}); commit {cfg.data.dir}.dvc to record this version")


COMMANDS = (generate, rebalance)
