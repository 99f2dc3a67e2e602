"""The decoded dataset on disk: one uint8 array (N, C, H, W) per dataset state, memory-mapped for training.

Decoding a folder of PNGs into one in-memory array costs N x C x H x W bytes of RAM and a serial decode on every run.
Here the images are decoded once, in parallel (each worker writes its slice of the array), into
`<cache>/<key>/images.npy`, with `targets.npy` and last `meta.json` (the commit point: the arrays' sha256). The
folder is built under a temporary name and renamed whole. Training opens the array copy-on-write: pages are read
from disk as batches touch them, so memory stays bounded by what the OS keeps cached.

The key hashes the labels with the dataset's DVC md5 when the caller checked the folder against it (the flows), else
with every data file's relative path and sha256: a changed, added or removed file gives a new cache, and a file
written again with the same bytes (touched, copied, checked out) finds it. The arrays are checked against their sha256 at an open unless they are "clean" as
git decides it: `meta.json` records each array's size, modification time and inode and when it took them, and an
open skips the re-hash (a 49 GB cache would take minutes per process) only when all three still match and the
modification time is more than a second older than the record (a write in the same clock tick cannot hide). A
change that keeps size, time and inode (a bit flip on disk, `touch -r` after an edit) goes unseen. A cache that
does not match is rebuilt, with a warning. Each open marks its cache as used; after a build only the KEEP most
recently used caches stay.

Decode workers are forked from a single-threaded caller and started from a fork server inside a threaded one (a
Prefect worker), where a fork can copy a lock another thread holds (`start_method`; a progress bar on a terminal
runs a thread, so there it is the fork server). On Linux each worker is killed when its parent dies
(`_die_with_parent`): an idle forked worker outlives a SIGKILLed caller otherwise, and holds what it inherited, such
as the caller's lock on the cache folder, so the next run would wait.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from components.core.atomic import file_digest, replace_folder, write_text
from components.core.errors import DataError
from components.core.processes import alive
from components.data.images import list_files
from components.data.versioning import check_md5

IMAGES, TARGETS, META = "images.npy", "targets.npy", "meta.json"
CHUNK = 4096  # images per decode task
KEEP = 3  # decoded dataset states kept in one cache folder
STAMPS, STAMPED_AT = "stamps", "stamped_at"
SETTLED_NS = 10**9  # how much older than its record a modification time must be to be trusted


def cache_key(root: Path, files: list[Path], labels: list[str], dataset_md5: str | None = None) -> str:
    """The cache's name. Given the dataset's DVC md5 (the flows pass it: their data was checked against it), that md5
    with the labels, so files that a `dvc checkout` wrote again find their cache; else every file's relative path and
    the sha256 of its bytes with the labels (content, not times: an edit that keeps the modification time is seen, a
    touch that keeps the bytes is not a change)."""
    digest = hashlib.sha256(json.dumps(labels).encode())
    if dataset_md5 is not None:
        digest.update(f"dvc md5 {check_md5(dataset_md5)}".encode())
        return digest.hexdigest()[:32]
    for rel in files:
        with open(root / rel, "rb") as f:
            digest.update(f"{rel.as_posix()}\t{hashlib.file_digest(f, 'sha256').hexdigest()}\n".encode())
    return digest.hexdigest()[:32]


def decode(path: Path) -> np.ndarray:
    """One image as uint8 (C, H, W)."""
    with Image.open(path) as im:
        arr = np.asarray(im)
    return (arr[:, :, None] if arr.ndim == 2 else arr).transpose(2, 0, 1)


def _decode_chunk(task: tuple[str, str, int, list[str]]) -> int:
    """Decode files into rows start.. of the array at `array` (opened read-write in this worker)."""
    root, array, start, rels = task
    out = np.load(array, mmap_mode="r+")
    for i, rel in enumerate(rels):
        image = decode(Path(root) / rel)
        if image.shape != out.shape[1:]:
            raise DataError(
                f"{Path(root) / rel} is {'x'.join(map(str, image.shape))}, but the first image is "
                f"{'x'.join(map(str, out.shape[1:]))}: training needs one image size"
            )
        out[start + i] = image
    out.flush()
    return len(rels)


PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with_parent(caller: int) -> None:
    """Pool initializer: the kernel kills this worker when its parent dies (Linux): the caller when forked from it,
    else the fork server, which exits when the caller does. Had the caller died before the signal was armed, the
    worker exits now."""
    if sys.platform.startswith("linux") and ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed in a decode worker")
    if os.getppid() != caller and not alive(caller):
        os._exit(1)


def start_method(threads: int, methods: list[str]) -> str:
    """How decode workers start: forked from a single-threaded caller (quick, and nothing of the caller's script is
    imported again); from a fork server (spawn where there is none) when other threads run, since a fork there can
    copy a lock another thread holds. Those workers import the caller's main script again, as spawned processes
    do, so a script that starts the work at import time needs the `if __name__ == "__main__":` guard."""
    if threads == 1 and "fork" in methods:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def build_cache(root: Path, files: list[Path], labels: list[str], target: Path, workers: int, progress=None) -> None:
    """Decode `files` into the cache folder `target` (built whole under a temporary name, meta.json last)."""
    index = {name: i for i, name in enumerate(labels)}
    unknown = next((rel for rel in files if rel.parts[0] not in index), None)
    if unknown is not None:
        raise DataError(f"{root / unknown} is not in a label folder of {', '.join(labels)}")
    shape = decode(root / files[0]).shape

    def build(tmp: Path) -> None:
        images = np.lib.format.open_memmap(tmp / IMAGES, mode="w+", dtype=np.uint8, shape=(len(files), *shape))
        del images  # the workers write it
        np.save(tmp / TARGETS, np.array([index[rel.parts[0]] for rel in files], dtype=np.int64))
        tasks = [(str(root), str(tmp / IMAGES), s, [r.as_posix() for r in files[s : s + CHUNK]]) for s in range(0, len(files), CHUNK)]
        method = start_method(threading.active_count(), multiprocessing.get_all_start_methods())
        with ProcessPoolExecutor(
            max(1, workers), mp_context=multiprocessing.get_context(method), initializer=_die_with_parent, initargs=(os.getpid(),)
        ) as pool:
            for done in pool.map(_decode_chunk, tasks):
                if progress is not None:
                    progress.update(done)
        meta = {
            "count": len(files),
            "shape": list(shape),
            "labels": labels,
            "images_sha256": file_digest(tmp / IMAGES),
            "targets_sha256": file_digest(tmp / TARGETS),
            **_stamp_record(tmp),
        }
        (tmp / META).write_text(json.dumps(meta, indent=2))

    replace_folder(build, target)


def _stamps(folder: Path) -> dict[str, list[int]]:
    """Size, modification time and inode of each array (a rename keeps all three)."""
    return {name: [(st := (folder / name).stat()).st_size, st.st_mtime_ns, st.st_ino] for name in (IMAGES, TARGETS)}


def _stamp_record(folder: Path) -> dict:
    return {STAMPS: _stamps(folder), STAMPED_AT: time.time_ns()}


def _clean(meta: dict, stamps: dict[str, list[int]]) -> bool:
    """Unchanged since meta.json recorded them, and old enough then that a later write would have moved the time."""
    return meta.get(STAMPS) == stamps and all(mtime < meta.get(STAMPED_AT, 0) - SETTLED_NS for _, mtime, _ in stamps.values())


def _intact(folder: Path) -> bool:
    """Whether the arrays are the ones meta.json describes: clean, or hashing to it (then meta.json takes the new
    stamps if it can, so the next open is cheap again)."""
    try:
        meta = json.loads((folder / META).read_text())
        if _clean(meta, _stamps(folder)):
            return True
        if file_digest(folder / IMAGES) != meta["images_sha256"] or file_digest(folder / TARGETS) != meta["targets_sha256"]:
            return False
    except (OSError, ValueError, KeyError):
        return False
    try:
        write_text(folder / META, json.dumps({**meta, **_stamp_record(folder)}, indent=2))
    except OSError as e:  # a read-only cache: still intact, just hashed again next time
        warnings.warn(f"could not record the checked state of {folder / META}: {e}", RuntimeWarning, stacklevel=2)
    return True


def evict(cache_dir: Path, keep: int = KEEP) -> list[Path]:
    """Remove all but the `keep` most recently used caches (meta.json's modification time, touched at each open);
    returns what was removed. Each is first renamed to a leftover name that the next build sweeps, so a kill mid-way
    leaves nothing that looks like a cache. A process still mapping a removed array keeps reading it (the file lives
    until closed)."""
    caches = sorted(
        (p for p in Path(cache_dir).iterdir() if (p / META).is_file()), key=lambda p: (p / META).stat().st_mtime_ns, reverse=True
    )
    for old in caches[keep:]:
        doomed = old.parent / f".{old.name}.new-{os.getpid()}-evict"
        old.rename(doomed)
        shutil.rmtree(doomed)
    return caches[keep:]


def _mark_used(folder: Path) -> None:
    try:
        os.utime(folder / META)
    except OSError:  # a read-only cache is used as it is
        pass


def cached_images(
    root: Path, labels: list[str], cache_dir: Path, workers: int | None = None, progress=None, dataset_md5: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ImageFolder at `root` as (images uint8 (N, C, H, W) memory-mapped copy-on-write, label indices (N,)),
    decoded once into `cache_dir` and checked against its recorded sha256 unless clean (see above). `progress(total)`
    makes a progress bar for a build; `dataset_md5` keys it by DVC's md5 (cache_key). Raises DataError naming a
    file outside the labels or of another size."""
    root = Path(root)
    files = list_files(root)
    if not files:
        raise DataError(f"dataset folder {root} holds no images")
    target = Path(cache_dir) / cache_key(root, files, labels, dataset_md5)
    intact = _intact(target)
    if not intact and (target / META).is_file():
        warnings.warn(f"the decoded image cache {target} does not match its meta.json; decoding {root} again", RuntimeWarning, stacklevel=2)
    if not intact:
        build_cache(root, files, labels, target, workers or os.cpu_count() or 1, progress(len(files)) if progress else None)
    _mark_used(target)  # eviction keeps the most recently used
    if not intact:
        evict(cache_dir)
    return np.load(target / IMAGES, mmap_mode="c"), np.load(target / TARGETS)
