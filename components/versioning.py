"""Dataset versions: DVC tracking of the data folder and the git revisions of code and data.

Thin wrappers over DVC's Python API and git. The dataset's identity is the md5 DVC records in `data.dvc`.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from components.config import SOURCE_ROOT
from components.errors import DataError


@dataclass(frozen=True)
class DatasetVersion:
    md5: str
    nfiles: int | None
    path: str
    data_git_rev: str | None  # last commit that changed data.dvc
    code_git_rev: str | None  # commit of the ganops source that runs
    code_dirty: bool

    def as_dict(self) -> dict:
        return asdict(self)


def read_dvc_file(dvc_file: Path) -> dict:
    """The single `outs` entry of a .dvc file: {'md5': ..., 'path': ..., 'nfiles': ...}. Raises DataError."""
    if not dvc_file.is_file():
        raise DataError(f"{dvc_file} does not exist: track the dataset with `ganops data import`")
    try:
        doc = yaml.safe_load(dvc_file.read_text()) or {}
        out = doc["outs"][0]
        md5 = out["md5"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as e:
        raise DataError(f"{dvc_file} is not a DVC file with an outs[0].md5 entry ({e!r})") from None
    return {"md5": str(md5).removesuffix(".dir"), "path": out.get("path"), "nfiles": out.get("nfiles")}


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def git_revision(cwd: Path) -> str | None:
    return _git(cwd, "rev-parse", "HEAD")


def git_dirty(cwd: Path) -> bool:
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return bool(status)


def last_commit_of(cwd: Path, file: str) -> str | None:
    return _git(cwd, "log", "-1", "--format=%H", "--", file)


def _repo(project_dir: Path):
    import logging

    from dvc.repo import Repo

    # DVC's own hints ("To track the changes with git, run ...") are replaced by ganops' messages.
    logging.getLogger("dvc").setLevel(logging.WARNING)

    try:
        return Repo(str(project_dir))
    except Exception as e:  # dvc raises NotDvcRepoError and friends
        raise DataError(f"{project_dir} is not a DVC project ({e}); run `dvc init` there first") from None


def dvc_add_and_push(project_dir: Path, data_dir: str) -> dict:
    """Track `data_dir` with DVC, push it to the default remote, and return the new data.dvc entry."""
    with _repo(project_dir) as repo:
        # Absolute targets: DVC resolves relative ones against the process's working directory.
        repo.add(str(project_dir / data_dir))
        repo.push(targets=[str(project_dir / f"{data_dir}.dvc")])
    return read_dvc_file(project_dir / f"{data_dir}.dvc")


def dvc_pull(project_dir: Path, dvc_file: str) -> bool:
    """Fetch and check out the data `dvc_file` tracks. Returns False when the remote lacks it."""
    with _repo(project_dir) as repo:
        try:
            repo.pull(targets=[str(project_dir / dvc_file)])
        except Exception:  # dvc raises CheckoutError / DownloadError when the remote lacks the objects
            return False
    return True


def workspace_changes(project_dir: Path, dvc_file: str) -> dict:
    """DVC status of the data folder against `dvc_file`: empty when they match."""
    with _repo(project_dir) as repo:
        return repo.status(targets=[str(project_dir / dvc_file)])


def dataset_version(project_dir: Path, data_dir: str, dvc_file: str) -> DatasetVersion:
    """Read the tracked md5 and git revisions; raise DataError if the workspace data does not match data.dvc."""
    entry = read_dvc_file(project_dir / dvc_file)
    if not (project_dir / data_dir).is_dir():
        raise DataError(f"{project_dir / data_dir} is missing: run `dvc pull {dvc_file}` or `ganops data import`")
    changes = workspace_changes(project_dir, dvc_file)
    if changes:
        raise DataError(
            f"{data_dir}/ does not match {dvc_file} (md5 {entry['md5']}): {changes}; "
            f"run `dvc checkout {dvc_file}` to restore it or `ganops data import {data_dir}` to record a new version"
        )
    return DatasetVersion(
        md5=entry["md5"],
        nfiles=entry["nfiles"],
        path=data_dir,
        data_git_rev=last_commit_of(project_dir, dvc_file),
        code_git_rev=git_revision(SOURCE_ROOT),
        code_dirty=git_dirty(SOURCE_ROOT),
    )
