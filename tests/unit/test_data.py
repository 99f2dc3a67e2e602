import ctypes
import hashlib
import io
import multiprocessing
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.core.atomic import replace_folder
from components.core.errors import DataError
from components.data.cache import _die_with_parent, start_method
from components.data.images import load_images
from components.data.importers import copy_image_folder, digits_arrays, write_digits
from components.data.png import encode_png

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shape", [(8, 8), (3, 5), (4, 6, 3), (300, 300)])
def test_encode_png_round_trips_through_pillow(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(pixels))) as im:
        im.load()
        np.testing.assert_array_equal(np.asarray(im), pixels)


def test_digits_are_written_deterministically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert write_digits(a) == write_digits(b) == 1797
    digest = lambda root: hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*.png")))).hexdigest()
    assert digest(a) == digest(b)
    images, labels = load_images(a, [str(i) for i in range(10)])
    pixels, targets = digits_arrays()
    assert images.shape == (1797, 1, 8, 8)
    # load_images orders by path (label folder first); compare as multisets per label.
    for label in range(10):
        assert sorted(map(bytes, images[labels == label, 0])) == sorted(map(bytes, pixels[targets == label]))


def test_committed_data_dvc_matches_the_digits_md5():
    """The md5 recorded in the committed data.dvc is what `ganops data import digits` produces (checked end to end
    in tests/integration); here: the file exists and names the data folder."""
    text = (REPO / "data.dvc").read_text()
    assert "path: data" in text and "nfiles: 1797" in text


@pytest.mark.parametrize("umask, folder, file, script", [(0o022, 0o755, 0o644, 0o755), (0o077, 0o700, 0o600, 0o700)])
def test_a_built_folder_gets_the_modes_a_plain_mkdir_and_open_would(tmp_path, umask, folder, file, script):
    """mkdtemp makes 0700 and some writers 0600 (tempfile, safetensors): an export must still be readable by the
    serving container's own uid, under the usual umask."""

    def build(tmp):
        (tmp / "sub").mkdir()
        fd, name = tempfile.mkstemp(dir=tmp / "sub")  # 0600 whatever the umask
        os.close(fd)
        (tmp / "run.sh").write_text("#!/bin/sh\n")
        (tmp / "run.sh").chmod(0o700)

    old = os.umask(umask)
    try:
        replace_folder(build, tmp_path / "out")
    finally:
        os.umask(old)
    out = tmp_path / "out"
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
    assert modes.pop(".") == folder and modes.pop("sub") == folder and modes.pop("run.sh") == script
    assert set(modes.values()) == {file}


def test_replace_folder_keeps_the_old_data_when_the_build_fails(tmp_path):
    target = tmp_path / "data"
    (target / "0").mkdir(parents=True)
    (target / "0" / "keep.png").write_bytes(b"old")

    def failing(tmp):
        (tmp / "x").write_text("half")
        raise DataError("boom")

    with pytest.raises(DataError):
        replace_folder(failing, target)
    assert (target / "0" / "keep.png").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folder left behind


def test_copy_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        copy_image_folder(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        copy_image_folder(tmp_path / "empty", tmp_path / "out")


def test_the_decoded_cache_equals_the_in_memory_load_and_is_checked_on_open(tmp_path):
    import warnings

    from components.data.cache import IMAGES, cached_images
    from components.data.images import load_images
    from components.data.importers import write_digits

    root = tmp_path / "digits"
    write_digits(root)
    labels = [str(i) for i in range(10)]
    want_x, want_y = load_images(root, labels)
    x, y = cached_images(root, labels, tmp_path / "cache", workers=2)
    assert np.array_equal(x, want_x) and np.array_equal(y, want_y) and x.dtype == np.uint8
    (folder,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    built = (folder / IMAGES).stat().st_mtime_ns
    x[0, 0, 0, 0] ^= 1  # copy-on-write: the cache file is never written through
    cached_images(root, labels, tmp_path / "cache")
    assert (folder / IMAGES).stat().st_mtime_ns == built  # reused, not rebuilt
    with open(folder / IMAGES, "r+b") as f:  # a byte flipped on disk
        f.seek(-1, 2)
        last = f.read(1)[0]
        f.seek(-1, 2)
        f.write(bytes([last ^ 1]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, _ = cached_images(root, labels, tmp_path / "cache")
    assert any("does not match its meta.json" in str(w.message) for w in caught)
    assert np.array_equal(x, want_x)


def test_a_cache_keyed_by_the_dvc_md5_survives_rewritten_files(tmp_path):
    from components.data.cache import cached_images
    from components.data.importers import write_digits

    root, cache, md5 = tmp_path / "digits", tmp_path / "cache", "0123456789abcdef0123456789abcdef"
    write_digits(root)
    labels = [str(i) for i in range(10)]
    cached_images(root, labels, cache, workers=1, dataset_md5=md5)
    cached_images(root, labels, cache, workers=1)
    before = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert len(before) == 2  # by md5, and by the files' contents
    for f in root.rglob("*.png"):  # what a `dvc checkout` does: the same bytes, written again
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    x, _ = cached_images(root, labels, cache, workers=1, dataset_md5=md5)
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == before  # found, not built again
    assert x.shape[0] == 1797
    with pytest.raises(DataError, match="dataset md5 'HEAD' is not 32 lowercase hex digits"):
        cached_images(root, labels, cache, dataset_md5="HEAD")


def test_without_an_md5_the_cache_is_keyed_by_content_not_by_times(tmp_path):
    from components.data.cache import cached_images
    from components.data.importers import write_digits

    root, cache = tmp_path / "digits", tmp_path / "cache"
    write_digits(root)
    labels = [str(i) for i in range(10)]

    def caches():
        return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))

    cached_images(root, labels, cache, workers=1)
    first = caches()
    for f in root.rglob("*.png"):  # touched: the same bytes, other times
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    cached_images(root, labels, cache, workers=1)
    assert caches() == first  # found, not built again
    by_size: dict[int, list] = {}
    for f in sorted(root.rglob("*.png")):
        by_size.setdefault(f.stat().st_size, []).append(f)
    a, b = next(group[:2] for group in by_size.values() if len(group) > 1)  # two images of one size
    kept = a.stat()
    a.write_bytes(b.read_bytes())  # an edit that keeps the size, then the modification time put back
    os.utime(a, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    assert a.stat().st_size == kept.st_size and a.stat().st_mtime_ns == kept.st_mtime_ns
    x, _ = cached_images(root, labels, cache, workers=1)
    assert len(caches()) == 2 and x.shape[0] == 1797  # a new cache for the new content


def test_the_decoded_cache_refuses_other_sizes_and_unknown_labels(tmp_path):
    from components.core.errors import DataError
    from components.data.cache import cached_images
    from components.data.png import encode_png

    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "1.png").write_bytes(encode_png(np.zeros((8, 8), np.uint8)))
    (root / "a" / "2.png").write_bytes(encode_png(np.zeros((16, 16), np.uint8)))
    with pytest.raises(DataError, match=r"2.png is 1x16x16, but the first image is 1x8x8"):
        cached_images(root, ["a"], tmp_path / "cache", workers=1)
    (root / "a" / "2.png").unlink()
    (root / "zz").mkdir()
    (root / "zz" / "3.png").write_bytes(encode_png(np.zeros((8, 8), np.uint8)))
    with pytest.raises(DataError, match="zz/3.png is not in a label folder of a"):
        cached_images(root, ["a"], tmp_path / "cache", workers=1)
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]  # nothing half-built stays


def _tiny_set(root, value):
    from components.data.png import encode_png

    (root / "a").mkdir(parents=True)
    for i in range(3):
        (root / "a" / f"{i}.png").write_bytes(encode_png(np.full((8, 8), value + i, np.uint8)))
    return root


def _age(folder, seconds):
    from components.data import cache

    for name in (cache.IMAGES, cache.TARGETS):
        info = (folder / name).stat()
        os.utime(folder / name, ns=(info.st_atime_ns, info.st_mtime_ns - seconds * 10**9))


def test_a_clean_cache_opens_without_hashing_and_a_copied_one_hashes_once(tmp_path, monkeypatch):
    import shutil

    from components.data import cache

    root = _tiny_set(tmp_path / "data", 0)
    cache.cached_images(root, ["a"], tmp_path / "cache", workers=1)
    (folder,) = [p for p in (tmp_path / "cache").iterdir() if (p / cache.META).is_file()]
    hashed = []
    digest = cache.file_digest
    monkeypatch.setattr(cache, "file_digest", lambda path: hashed.append(path.name) or digest(path))
    cache.cached_images(root, ["a"], tmp_path / "cache")
    assert len(hashed) == 2  # just built: its times are too close to the record to be trusted yet
    _age(folder, 10)  # as if built a while ago
    cache.cached_images(root, ["a"], tmp_path / "cache")
    cache.cached_images(root, ["a"], tmp_path / "cache")
    assert len(hashed) == 4  # hashed once more (the times changed), then clean
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved / folder.name, copy_function=shutil.copy2)  # same bytes and times, new inodes
    shutil.rmtree(tmp_path / "cache")
    x, _ = cache.cached_images(root, ["a"], moved)
    cache.cached_images(root, ["a"], moved)
    assert len(hashed) == 6 and x[2, 0, 0, 0] == 2  # verified once, not rebuilt, then clean


def test_a_write_that_keeps_the_times_of_a_fresh_cache_is_caught(tmp_path):
    import warnings

    from components.data import cache

    root = _tiny_set(tmp_path / "data", 0)
    cache.cached_images(root, ["a"], tmp_path / "cache", workers=1)
    (folder,) = [p for p in (tmp_path / "cache").iterdir() if (p / cache.META).is_file()]
    images = folder / cache.IMAGES
    before = images.stat()
    with open(images, "r+b") as f:  # a write in the same clock tick as the record: the times do not move
        f.seek(-1, 2)
        f.write(b"\x7f")
    os.utime(images, ns=(before.st_atime_ns, before.st_mtime_ns))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, _ = cache.cached_images(root, ["a"], tmp_path / "cache")
    assert any("does not match its meta.json" in str(w.message) for w in caught) and x[2, 0, 7, 7] == 2


def test_only_the_most_recently_used_caches_stay(tmp_path):
    from components.data import cache

    roots = [_tiny_set(tmp_path / f"data{i}", 10 * i) for i in range(cache.KEEP + 1)]
    folders = []
    for i, root in enumerate(roots[: cache.KEEP]):
        cache.cached_images(root, ["a"], tmp_path / "cache", workers=1)
        folders.append(max((tmp_path / "cache").iterdir(), key=lambda p: (p / cache.META).stat().st_mtime_ns))
        os.utime(folders[-1] / cache.META, ns=(i * 10**9, i * 10**9))  # used in this order
    cache.cached_images(roots[0], ["a"], tmp_path / "cache")  # the oldest used again: now the newest
    x, _ = cache.cached_images(roots[cache.KEEP], ["a"], tmp_path / "cache", workers=1)  # a new dataset state
    left = {p for p in (tmp_path / "cache").iterdir() if (p / cache.META).is_file()}
    assert len(left) == cache.KEEP and folders[0] in left and folders[1] not in left and x[0, 0, 0, 0] == 10 * cache.KEEP


def test_decode_workers_fork_only_from_a_single_threaded_caller():
    linux, mac = ["fork", "spawn", "forkserver"], ["spawn", "fork", "forkserver"]
    assert start_method(1, linux) == "fork" and start_method(1, mac) == "fork"
    assert start_method(3, linux) == "forkserver"  # a Prefect worker's threads
    assert start_method(1, ["spawn"]) == "spawn" and start_method(2, ["spawn"]) == "spawn"


def _armed_signal(caller: int) -> None:
    """A decode worker's start, then exit with the parent-death signal the kernel holds for it (prctl's 2: get)."""
    _die_with_parent(caller)
    sig = ctypes.c_int()
    ctypes.CDLL(None).prctl(2, ctypes.byref(sig))
    os._exit(sig.value)


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="a parent-death signal is Linux's")
def test_a_decode_worker_dies_with_its_parent_or_exits_when_the_caller_is_gone():
    context = multiprocessing.get_context("fork")
    gone = context.Process(target=_armed_signal, args=(os.getpid() + 10**6,))  # "started by" a pid that does not run
    armed = context.Process(target=_armed_signal, args=(os.getpid(),))
    for child in (gone, armed):
        child.start()
        child.join(10)
    assert (gone.exitcode, armed.exitcode) == (1, signal.SIGKILL)
