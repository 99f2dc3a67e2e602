"""Where things live: the source tree, the project's state folder, and checks for names that become paths."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from components.core.errors import ConfigError

SOURCE_ROOT = Path(__file__).resolve().parents[2]
PRESETS_DIR = SOURCE_ROOT / "configs"
STATE_DIR_ENV = "GANOPS_HOME"
STATE_DIR_NAME = ".ganops"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME_LENGTH = 100  # names become folder names, MLflow run and model names and ledger names: keep them short
# A git revision as a user writes one (hash, branch, tag, HEAD~2, v1^{commit}); never an option like `--output=F`.
GIT_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./~^{}@-]*$")
S3_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/[A-Za-z0-9._\-/]*)?$")


def state_dir(project_dir: Path) -> Path:
    """The one git-ignored folder that holds all local state (MLflow, DVC remote, caches, exports)."""
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env).resolve() if env else (Path(project_dir) / STATE_DIR_NAME).resolve()


def check_path_name(name: str, what: str) -> str:
    """Return `name` when it is safe as one path component (letters, digits, '.', '_', '-', not starting with a
    dot or dash: no '..', no separators, no hidden files) of at most MAX_NAME_LENGTH characters. Raises ConfigError
    naming `what` and the rule."""
    if len(name or "") > MAX_NAME_LENGTH:
        raise ConfigError(f"{what} is {len(name)} characters long ({name[:20]!r}...); at most {MAX_NAME_LENGTH}")
    if not SAFE_NAME.match(name or ""):
        raise ConfigError(f"{what} {name!r} must be one folder name: letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_writable(folder: Path, what: str) -> Path:
    """Return `folder` when it is, or can be created as, a folder this process can write: its nearest existing
    ancestor must be a folder in which a probe folder can be made (and is removed at once; permission bits alone do
    not tell, /proc refuses root too). Raises ConfigError naming `what`, the folder and why, before any work."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise ConfigError(f"{what} {folder}: {existing} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ganops-probe-", dir=existing))
    except OSError as e:
        raise ConfigError(f"{what} {folder} cannot be written: making a folder in {existing} fails ({e.strerror or e})") from None
    return folder


def check_revision(rev: str, what: str) -> str:
    """Return `rev` when it reads as a git revision, so it can be passed to git; raises ConfigError otherwise."""
    if not GIT_REVISION.match(rev or ""):
        raise ConfigError(f"{what} {rev!r} is not a git revision (letters, digits and ._/~^{{}}@-, not starting with '-')")
    return rev


def parse_s3_url(url: str, what: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, 'prefix/' or ''). Raises ConfigError naming `what` and the rule."""
    match = S3_URL.match(url or "")
    if not match or ".." in url:
        raise ConfigError(
            f"{what} {url!r} is not s3://bucket[/prefix] (bucket: 3-63 lowercase letters, digits, dots and "
            "dashes; prefix: letters, digits and . _ - /, no ..)"
        )
    prefix = (match.group(2) or "").strip("/")
    return match.group(1), prefix + "/" if prefix else ""
