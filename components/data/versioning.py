"""Dataset versions: DVC tracking of the data folder and the git revisions of code and data.

Thin wrappers over DVC's Python API and git. The dataset's identity is the md5 DVC records in `data.dvc`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from components.core.atomic import file_digest, replace_folder
from components.core.errors import DataError
from components.core.paths import check_revision
from components.core.source import code_revision, git
from components.data.importers import build_from_source, write_digits
from components.data.intake import check_folder, refusal
from components.data.manifest import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class DatasetVersion:
    """One dataset version: DVC's md5 of the folder, where it is on disk, and the git revisions that name it."""

    md5: str
    nfiles: int | None
    path: str  # as recorded in lineage: the data folder relative to the project, or the materialized folder
    root: Path  # the folder to read
    data_git_rev: str | None  # last commit that changed data.dvc
    code_git_rev: str | None  # commit of the ganops source that runs
    code_dirty: bool
    data_dirty: bool = False  # data.dvc differs from its last commit (or was never committed): no revision names md5

    def as_dict(self) -> dict:
        return {**asdict(self), "root": str(self.root)}


def parse_dvc_text(text: str, source: str) -> dict:
    """The single `outs` entry of a .dvc file's text: {'md5': ..., 'path': ..., 'nfiles': ...}. Raises DataError."""
    try:
        out = (yaml.safe_load(text) or {})["outs"][0]
        md5 = out["md5"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as e:
        raise DataError(f"{source} is not a DVC file with an outs[0].md5 entry ({e!r})") from None
    return {"md5": str(md5).removesuffix(".dir"), "path": out.get("path"), "nfiles": out.get("nfiles")}


def read_dvc_file(dvc_file: Path) -> dict:
    """The `outs` entry of the .dvc file on disk. Raises DataError."""
    if not dvc_file.is_file():
        raise DataError(f"{dvc_file} does not exist: track the dataset with `ganops data import`")
    return parse_dvc_text(dvc_file.read_text(), str(dvc_file))


def file_dirty(cwd: Path, file: str) -> bool:
    """Whether `file` differs from its last commit or was never committed (False outside a git repository)."""
    return bool(git(cwd, "status", "--porcelain", "--", file))


def last_commit_of(cwd: Path, file: str) -> str | None:
    return git(cwd, "log", "-1", "--format=%H", "--", file)


def _repo(project_dir: Path):
    import logging

    from dvc.repo import Repo

    # DVC's own hints ("To track the changes with git, run ...") are replaced by ganops' messages.
    logging.getLogger("dvc").setLevel(logging.WARNING)

    try:
        return Repo(str(project_dir))
    except Exception as e:  # dvc raises NotDvcRepoError and friends
        raise DataError(f"{project_dir} is not a DVC project ({e}); run `dvc init` there first") from None


def dvc_remote_url(project_dir: Path) -> str | None:
    """The URL of the project's default DVC remote, or None."""
    try:
        with _repo(project_dir) as repo:
            name = repo.config["core"].get("remote")
            return repo.config["remote"][name]["url"] if name else None
    except (DataError, KeyError):
        return None


def require_remote(project_dir: Path) -> None:
    """DataError naming the config file when the project has no default DVC remote, where every dataset version is
    pushed (checked before anything is written)."""
    with _repo(project_dir) as repo:
        name = repo.config["core"].get("remote")
    if not name:
        raise DataError(
            f"{project_dir / '.dvc' / 'config'} names no default DVC remote, where ganops pushes every dataset version: "
            "add one with `dvc remote add -d NAME URL` (a folder or s3://bucket/prefix); nothing was written"
        )


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
    code_rev, code_dirty = code_revision()  # once: each reading runs git twice
    return DatasetVersion(
        md5=entry["md5"],
        nfiles=entry["nfiles"],
        path=data_dir,
        root=project_dir / data_dir,
        data_git_rev=last_commit_of(project_dir, dvc_file),
        code_git_rev=code_rev,
        code_dirty=code_dirty,
        data_dirty=file_dirty(project_dir, dvc_file),
    )


def resolve_commit(project_dir: Path, rev: str) -> str:
    """The commit hash `rev` names. The revision is checked as text first, then resolved by `git rev-parse --verify
    --end-of-options`, so it can never be read as an option. Raises ConfigError or DataError naming it."""
    check_revision(rev, "data revision")
    commit = git(project_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if commit is None:
        raise DataError(f"data revision {rev!r} is not a commit of the git repository at {project_dir}")
    return commit


def dvc_file_at(project_dir: Path, dvc_file: str, rev: str) -> dict:
    """The data.dvc entry as committed at git revision `rev`. Raises DataError naming the revision."""
    commit = resolve_commit(project_dir, rev)
    text = git(project_dir, "show", f"{commit}:{dvc_file}")
    if text is None:
        raise DataError(f"git revision {rev!r} has no {dvc_file} (check `git log -- {dvc_file}`)")
    return {**parse_dvc_text(text, f"{dvc_file} at {rev}"), "commit": commit}


def materialize_revision(project_dir: Path, dvc_file: str, rev: str, dest_root: Path) -> DatasetVersion:
    """Build the dataset that `dvc_file` tracked at git revision `rev` in dest_root/<md5>/, fetching from the DVC
    remote as needed, without touching the user's working copy. Returns the version (its root is that folder)."""
    entry = dvc_file_at(project_dir, dvc_file, rev)
    md5, commit = entry["md5"], entry["commit"]
    target = materialize_md5(project_dir, dvc_file, md5, rev, dest_root)
    code_rev, code_dirty = code_revision()
    return DatasetVersion(
        md5=md5,
        nfiles=entry["nfiles"],
        path=str(target),
        root=target,
        data_git_rev=commit,
        code_git_rev=code_rev,
        code_dirty=code_dirty,
    )


def materialize_md5(project_dir: Path, dvc_file: str, md5: str, rev: str | None, dest_root: Path) -> Path:
    """dest_root/<md5>/ built from the DVC cache (fetched from the remote through `dvc_file` at `rev` when the cache
    lacks it), written whole or not at all. Raises DataError naming what is missing."""
    target = dest_root / md5
    if (target / ".complete").is_file():
        return target
    with _repo(project_dir) as repo:
        cache = Path(repo.cache.local.path)
        listing = cache / md5[:2] / f"{md5[2:]}.dir"
        if not listing.is_file() and rev:
            repo.fetch(targets=[dvc_file], revs=[rev], workspace=False)
    if not listing.is_file():
        raise DataError(
            f"dataset md5 {md5} (from {dvc_file} at {rev or 'an uncommitted version'}) is neither in the DVC cache nor in the remote"
        )

    def build(tmp: Path) -> None:
        for item in json.loads(listing.read_text()):
            src = cache / item["md5"][:2] / item["md5"][2:]
            if not src.is_file():
                raise DataError(f"{item['relpath']} (md5 {item['md5']}) of dataset {md5} is missing from the DVC cache and remote")
            out = tmp / item["relpath"]
            if not out.resolve().is_relative_to(tmp.resolve()):
                raise DataError(f"dataset {md5} lists {item['relpath']!r}, which escapes the dataset folder")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
        (tmp / ".complete").write_text(md5)

    replace_folder(build, target)
    return target


MD5 = re.compile(r"[0-9a-f]{32}")


def dataset_md5_of(project_dir: Path, dvc_file: str, text: str) -> str:
    """`text` as a dataset md5: itself when it is one, else the md5 `dvc_file` names at git revision `text`."""
    return text if MD5.fullmatch(text or "") else dvc_file_at(project_dir, dvc_file, text)["md5"]


@dataclass(frozen=True)
class DatasetCheck:
    """A dataset version recomputed from its bytes in the DVC cache: problems name each file that differs."""

    md5: str
    files: int
    fetched: bool  # objects had to come from the DVC remote
    problems: list[str]


def _listing(cache: Path, md5: str) -> list[dict] | None:
    path = cache / md5[:2] / f"{md5[2:]}.dir"
    return json.loads(path.read_bytes()) if path.is_file() else None


def check_md5(md5: str) -> str:
    """`md5` if it is a dataset md5 as DVC writes it; raises DataError naming it otherwise."""
    if not MD5.fullmatch(md5 or ""):
        raise DataError(f"dataset md5 {md5!r} is not 32 lowercase hex digits (DVC's md5 of a folder)")
    return md5


def _default_remote(repo) -> str | None:
    """The default DVC remote as 'NAME (URL)', or None when the project has none."""
    name = repo.config["core"].get("remote")
    return f"'{name}' ({repo.config['remote'].get(name, {}).get('url', '?')})" if name else None


def fetch_objects(repo, md5s: list[str]) -> None:
    """Fetch objects by md5 (a folder listing as 'MD5.dir') from the default DVC remote into the cache, as `dvc
    fetch` would; what the remote lacks stays missing, for the caller to name."""
    import logging

    from dvc_data.hashfile.hash_info import HashInfo

    # DVC logs each object the remote lacks (through a handler that raises when its stream is not a terminal's);
    # the caller names them instead, so these loggers are quiet during the fetch.
    loggers = [logging.getLogger(name) for name in ("dvc.data_cloud", "dvc_data", "dvc_objects")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        repo.cloud.pull([HashInfo("md5", md5) for md5 in md5s])
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def verify_dataset(project_dir: Path, md5: str) -> DatasetCheck:
    """Recompute dataset `md5` from the DVC cache, fetching by md5 from the default remote what the cache lacks
    (the listing, then each missing object): the listing's own md5 must be `md5` and each file's md5 its listed one.
    A problem names each file missing from both, and the remote. Raises DataError when md5 is not one."""
    check_md5(md5)
    with _repo(project_dir) as repo:
        cache, remote, fetched = Path(repo.cache.local.path), _default_remote(repo), False
        if _listing(cache, md5) is None and remote:
            fetch_objects(repo, [f"{md5}.dir"])
            fetched = True
        entries = _listing(cache, md5)
        lacking = [e["md5"] for e in entries or [] if not (cache / e["md5"][:2] / e["md5"][2:]).is_file()]
        if lacking and remote:
            fetch_objects(repo, lacking)
            fetched = True
    nowhere = f"the DVC cache and from the DVC remote {remote}" if remote else "the DVC cache, and the project has no DVC remote"
    if entries is None:
        return DatasetCheck(md5, 0, fetched, [f"the listing of dataset {md5} ({md5}.dir) is missing from {nowhere}"])
    listing = cache / md5[:2] / f"{md5[2:]}.dir"
    problems = [] if file_digest(listing, "md5") == md5 else [f"the listing {listing} does not hash to {md5}"]
    for e in entries:
        obj = cache / e["md5"][:2] / e["md5"][2:]
        if not obj.is_file():
            problems.append(f"{e['relpath']} (md5 {e['md5']}) is missing from {nowhere}")
        elif file_digest(obj, "md5") != e["md5"]:
            problems.append(f"{e['relpath']}: its bytes in the DVC cache ({obj}) no longer hash to {e['md5']}")
    return DatasetCheck(md5, len(entries), fetched, problems)


def dataset_files(project_dir: Path, md5: str, select: Callable[[str], bool]) -> dict[str, bytes]:
    """The bytes of every file of dataset `md5` whose relative path `select` accepts, read from the DVC cache, each
    checked against its listed md5 (a file missing from the cache or no longer matching is left out)."""
    if not MD5.fullmatch(md5 or ""):
        return {}
    try:
        with _repo(project_dir) as repo:
            cache = Path(repo.cache.local.path)
    except DataError:
        return {}
    out = {}
    for entry in _listing(cache, md5) or []:
        if not select(entry.get("relpath", "")):
            continue
        obj = cache / entry["md5"][:2] / entry["md5"][2:]
        blob = obj.read_bytes() if obj.is_file() else None
        if blob is not None and hashlib.md5(blob).hexdigest() == entry["md5"]:
            out[entry["relpath"]] = blob
    return out


def dataset_member(project_dir: Path, md5: str, relpath: str) -> bytes | None:
    """The bytes of file `relpath` of dataset `md5` from the DVC cache (see dataset_files); None when absent."""
    return dataset_files(project_dir, md5, lambda rel: rel == relpath).get(relpath)


def resolve_dataset(project_dir: Path, data_dir: str, dvc_file: str, revision: str, dest_root: Path) -> DatasetVersion:
    """The dataset a run trains on: data.dvc at `revision` (materialized under dest_root) or, with no revision,
    the working copy (which must match data.dvc)."""
    if revision:
        return materialize_revision(project_dir, dvc_file, revision, dest_root)
    return dataset_version(project_dir, data_dir, dvc_file)


def ensure_dataset(project_dir: Path, data_dir: str) -> str:
    """Make sure the dataset <data_dir>.dvc names is present: keep it, pull it from the DVC remote, or rebuild the
    bundled digits set (which must then match the recorded md5). Returns what was done, as a sentence.

    Raises DataError when the recorded version is neither in the remote nor the digits set; data.dvc and the
    data folder are then left as they were.
    """
    dvc_file = f"{data_dir}.dvc"
    if (project_dir / data_dir).is_dir():
        return f"{data_dir}/ present"
    wanted = read_dvc_file(project_dir / dvc_file) if (project_dir / dvc_file).is_file() else None
    if wanted and dvc_pull(project_dir, dvc_file):
        return f"pulled {data_dir}/ (md5 {wanted['md5']}) from the DVC remote"
    old_text = (project_dir / dvc_file).read_text() if wanted else None
    require_remote(project_dir)
    replace_folder(write_digits, project_dir / data_dir)
    entry = dvc_add_and_push(project_dir, data_dir)
    if wanted and old_text is not None and entry["md5"] != wanted["md5"]:  # old_text is read whenever wanted is set
        (project_dir / dvc_file).write_text(old_text)
        shutil.rmtree(project_dir / data_dir)
        raise DataError(
            f"{dvc_file} tracks md5 {wanted['md5']}, which the DVC remote lacks and which is not the bundled "
            f"digits set ({entry['md5']}); configure the remote that holds it and run `dvc pull {dvc_file}`"
        )
    return f"recreated the digits dataset in {data_dir}/ (md5 {entry['md5']}) and pushed it to the DVC remote"


def import_dataset(project_dir: Path, source: str, data_dir: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, dict]:
    """`ganops data import`: write SOURCE as the project's data folder (swapped in only when complete and every file
    passes validation's per-file checks, `intake.check_folder`), track it with DVC and push it to the remote.
    Returns (files written, the new data.dvc entry). Raises DataError naming every bad file, with nothing written."""
    build = build_from_source(source)
    require_remote(project_dir)

    def checked(tmp: Path) -> int:
        count = build(tmp)
        bad = check_folder(tmp, max_pixels)
        if bad:
            raise refusal(source, bad)
        return count

    count = replace_folder(checked, project_dir / data_dir)
    return count, dvc_add_and_push(project_dir, data_dir)
