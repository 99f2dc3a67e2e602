"""What every command shares: the common options, the environment set up before heavy imports, and `--set`
pairs. Components are imported inside functions here as in every command module, so `ganops --help` stays instant."""

from __future__ import annotations

import os
import re
from pathlib import Path

import typer

from components.core.errors import GanopsError

ProjectOpt = typer.Option(Path("."), "--project-dir", "-C", help="Project folder holding data.dvc and .dvc/.", file_okay=False)
ConfigOpt = typer.Option(
    None, "--config", "-c", help="Preset name (cdcgan, digits, rgb32, rgb64, smoke: configs/) or a YAML file. Default: digits."
)
SetOpt = typer.Option(
    [], "--set", help="Override keys: --set train.steps=100 gate.rules.ceiling.value=20 (several pairs after one --set, or --set repeated)."
)
OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


def prepare_env(project_dir: Path) -> Path:
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


def dataset_md5_of(root: Path, text: str) -> str:
    """A --data value (a DVC md5, or a git revision of data.dvc) as a dataset md5."""
    from components.data.versioning import dataset_md5_of as md5_of

    return md5_of(root, "data.dvc", text)


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
