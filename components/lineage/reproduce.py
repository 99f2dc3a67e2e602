"""`ganops audit --reproduce`: train again from what a version records, and compare the weights.

The recorded code commit is checked out in a temporary git worktree (the user's checkout is not touched), the
recorded dataset is rebuilt from the DVC cache or remote by its md5, and that commit's own `ganops train` runs the
run's config artifact on it, in a fresh process, as the flow's training step does (under torchrun when the run used
several processes). On CPU a deterministic run must give the registered generator's tensors bit for bit; training
recorded on a GPU cannot be repeated bitwise here, so the largest difference is reported instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from components.core.errors import GanopsError
from components.core.paths import SOURCE_ROOT, check_revision
from components.data.versioning import materialize_md5

CHILD_ENV_DROP = ("GANOPS_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_API_URL", "PYTHONPATH")


def compare_weights(a: dict, b: dict) -> tuple[bool, float, list[str]]:
    """(every tensor bitwise equal, the largest absolute difference, names present in one only) of two state dicts."""
    names = sorted(set(a) ^ set(b))
    worst = 0.0
    equal = not names
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if x.shape != y.shape:
            names.append(f"{key} (shape {tuple(x.shape)} vs {tuple(y.shape)})")
            equal = False
            continue
        if not bool((x == y).all()):
            equal = False
            worst = max(worst, float((x.double() - y.double()).abs().max()))
    return equal, worst, names


def _train_command(config: dict, config_file: Path, data: Path, out: Path, code: Path, overrides: list[str]) -> list[str]:
    train = config.get("train", {})
    # The run's world size (as training.job.effective_launcher: several processes or nodes mean torchrun), here on
    # one node: DDP's averaged gradients depend on it.
    world = int(train.get("nproc", 1)) * int(train.get("nnodes", 1))
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}"]
        if world > 1 or train.get("launcher") == "torchrun"
        else [sys.executable]
    )
    return [
        *launcher,
        "-m",
        "flows.cli",
        "train",
        "--config",
        str(config_file),
        "--data",
        str(data),
        "--out",
        str(out),
        "--no-validate",
        *[x for o in overrides for x in ("--set", o)],
        "-C",
        str(code),
    ]


def retrain_recorded(project_dir: Path, config: dict, config_file: Path, md5: str, data_rev: str | None, code_rev: str) -> dict:
    """Train the recorded config on the recorded data with the recorded code; returns the generator's tensors.
    A config that asked for CUDA trains on CPU when this machine has none."""
    import shutil

    import torch
    from safetensors.torch import load_file

    check_revision(code_rev, "code revision")
    work = Path(tempfile.mkdtemp(prefix="ganops-reproduce-"))
    code = work / "code"
    try:
        dvc_file = (config.get("data") or {}).get("dvc_file", "data.dvc")
        data = materialize_md5(project_dir, dvc_file, md5, data_rev, work / "data")
        subprocess.run(["git", "-C", str(SOURCE_ROOT), "worktree", "prune"], capture_output=True)  # a killed run's leftovers
        added = subprocess.run(
            ["git", "-C", str(SOURCE_ROOT), "worktree", "add", "--detach", "--quiet", str(code), code_rev], capture_output=True, text=True
        )
        if added.returncode:
            raise GanopsError(f"could not check out code revision {code_rev} in a worktree: {added.stderr.strip()[:300]}")
        cpu_only = config.get("train", {}).get("device") == "cuda" and not torch.cuda.is_available()
        env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
        print(
            f"reproducing: training {config.get('train', {}).get('steps')} steps of {config.get('name')} with code "
            f"{code_rev[:12]} on dataset {md5} in {work}",
            file=sys.stderr,
            flush=True,
        )
        done = subprocess.run(
            _train_command(config, config_file, data, work / "out", code, ["train.device=cpu"] if cpu_only else []),
            cwd=code,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise GanopsError(f"retraining with code {code_rev[:12]} failed (exit {done.returncode}): {tail[0][:300]}")
        return load_file(str(work / "out" / "generator.safetensors"))
    finally:
        subprocess.run(["git", "-C", str(SOURCE_ROOT), "worktree", "remove", "--force", str(code)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
