"""Small filesystem helpers that every stage shares: never leave half-written state, hash files in blocks, and
let concurrent processes take turns on shared state."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from components.core.errors import GanopsError
from components.core.processes import alive

T = TypeVar("T")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_bytes(obj) -> bytes:
    """The one serialization of a recorded JSON artifact (sorted keys, indented, a final newline): the bytes whose
    sha256 a run records, so a byte changed later is caught."""
    import json

    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def replace_folder(build: Callable[[Path], T], target: Path) -> T:
    """Build a new folder with `build(tmp_path)` and swap it in for `target` only if the build succeeds.

    The existing folder is untouched when the build fails, and a reader never sees a half-built one. The temporary
    names carry the builder's pid: what a killed builder left (a half-built `.NAME.new-PID-*`, or the old folder
    moved aside as `.NAME.old-PID-*` when the kill fell between the two renames) is removed by the next build.
    Returns what `build` returned. Raises GanopsError naming `target` when its parent cannot be written.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-{os.getpid()}-", dir=target.parent))
    except OSError as e:  # /proc, a read-only mount, a file where a folder should be: nothing was written
        raise GanopsError(f"{target} cannot be written: {e.strerror or e} ({e.filename or target.parent})") from None
    try:
        result = build(tmp)
        usual_modes(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{tmp.name.split('.new-', 1)[1]}"
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return result


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status); 0o022 where it cannot be read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def usual_modes(root: Path) -> None:
    """Give a folder built under a private temporary name the modes a plain mkdir and open would have: folders
    0777 and files 0666 (0777 if executable) less the umask. mkdtemp makes 0700 and some writers 0600, which would
    keep every other user (a serving container's own uid) out of an export or a generated folder."""
    mask = current_umask()
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = 0o777 if path.is_dir() or path.stat().st_mode & 0o111 else 0o666  # an executable stays one
        path.chmod(mode & ~mask)


LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>new|old)-(?P<pid>\d+)-[^.]*$")


def sweep_leftovers(target: Path) -> list[Path]:
    """Tidy what builders that are gone left next to `target` (for every folder there, not only `target`): a
    folder moved aside (`.NAME.old-*`) goes back when NAME is missing (the kill fell between the two renames), else
    it and every half-built `.NAME.new-*` are removed. Returns the paths removed or restored."""
    touched = []
    for path in sorted(target.parent.glob(".*.*-*")):
        found = LEFTOVER.match(path.name)
        if not found or alive(int(found["pid"])):
            continue
        home = path.parent / found["name"]
        if found["kind"] == "old" and not home.exists():
            path.rename(home)
        else:
            shutil.rmtree(path, ignore_errors=True)
        touched.append(path)
    return touched


def replace_file(write: Callable[[Path], T], target: Path, durable: bool = False) -> T:
    """Write a new file with `write(tmp_path)` and rename it over `target` only if the write succeeds.

    The temporary name is hidden and keeps the target's suffix (some writers, like np.savez, add one otherwise).
    With `durable`, the file and the rename are fsynced, so even a power cut leaves the old file or the new one.
    Returns what `write` returned.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp{target.suffix}")
    try:
        result = write(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync(target.parent)
    return result


def write_text(target: Path, text: str, durable: bool = False) -> Path:
    """Write `text` to `target` atomically (see replace_file)."""
    replace_file(lambda tmp: tmp.write_text(text), target, durable)
    return target


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if missing) for the block; other processes wait.

    The kernel drops the lock when the last process holding its open file dies, even by SIGKILL: a forked child
    shares it, so children that can outlive a killed holder must die with it (see data/cache.py).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
