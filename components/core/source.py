"""Git, and the revision of ganops's own source: git at SOURCE_ROOT, else the commit an image's build recorded
(BUILD_COMMIT_ENV, set from the `GANOPS_COMMIT` build argument by infra/images/build.sh), so a model trained in a
container names the code it ran even though the image holds no repository."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from components.core.paths import SOURCE_ROOT, check_revision

BUILD_COMMIT_ENV, BUILD_DIRTY_ENV = "GANOPS_BUILD_COMMIT", "GANOPS_BUILD_DIRTY"


def git(cwd: Path, *args: str) -> str | None:
    """git's stdout (stripped), or None when git fails or prints nothing."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def is_checkout(cwd: Path) -> bool:
    return git(cwd, "rev-parse", "--git-dir") is not None


def code_revision() -> tuple[str | None, bool]:
    """(commit, uncommitted changes) of the source that runs: git's when SOURCE_ROOT is a checkout, else the image's
    build record (None when there is neither, or it is not a full commit hash)."""
    if is_checkout(SOURCE_ROOT):
        return git(SOURCE_ROOT, "rev-parse", "HEAD"), bool(git(SOURCE_ROOT, "status", "--porcelain", "--untracked-files=no"))
    commit = os.environ.get(BUILD_COMMIT_ENV, "")
    return (commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None), os.environ.get(BUILD_DIRTY_ENV) == "true"


def commit_exists(cwd: Path, rev: str) -> bool | None:
    """Whether `rev` (checked as a revision first) names a commit of the git repository at cwd; None when cwd is no
    repository (an image: nothing to check it in)."""
    check_revision(rev, "code revision")
    if not is_checkout(cwd):
        return None
    return git(cwd, "cat-file", "-t", "--end-of-options", f"{rev}^{{commit}}") == "commit"
