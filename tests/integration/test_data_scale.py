"""The decoded, memory-mapped dataset cache under training (a smaller set than the benchmark's 200,000 images):
the same weights as the in-memory path bit for bit, resume through it bitwise, a `ganops train` SIGKILLed while its
workers decode leaves none of them behind, and a `ganops train` process whose peak memory does not hold the decoded
set (the in-memory path's does)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from components.core.processes import peak_rss_mb, same_process_alive, start_ticks
from components.presets import load_config
from components.training.job import train_to_files

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SETTINGS = [
    "train.base_channels=16",
    "train.batch_size=32",
    "train.z_dim=16",
    "train.log_every=2",
    "train.sample_every=1000",
    "train.ema_decay=0.0",
    "validation.min_images=10",
]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale") / "photos"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "make_dataset.py"), str(out), "--size", "32", "--count", "20000"],
        check=True,
        capture_output=True,
    )
    return out


def weights(folder: Path) -> dict:
    return load_file(str(folder / "generator.safetensors"))


def assert_bitwise(a: dict, b: dict):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_cache_trains_bitwise_like_memory_and_resumes_bitwise(photos, tmp_path):
    cfg = load_config("rgb32", SETTINGS + ["train.steps=6", "train.checkpoint_every=3"])
    cache = tmp_path / "cache"
    train_to_files(photos, cfg, tmp_path / "memory")
    train_to_files(photos, cfg, tmp_path / "cached", cache_dir=cache)
    assert_bitwise(weights(tmp_path / "memory"), weights(tmp_path / "cached"))
    short = load_config("rgb32", SETTINGS + ["train.steps=3", "train.checkpoint_every=3"])
    train_to_files(photos, short, tmp_path / "resumed", cache_dir=cache)  # as if killed after step 3
    outcome = train_to_files(photos, cfg, tmp_path / "resumed", cache_dir=cache, resume=True)
    assert outcome.resumed_from == 3
    assert_bitwise(weights(tmp_path / "cached"), weights(tmp_path / "resumed"))


def peak_mb(args: list[str], home: Path) -> float:
    peak, _, err, code = peak_rss_mb([sys.executable, "-m", "flows.cli", "train", *args], {**os.environ, "GANOPS_HOME": str(home)}, REPO)
    assert code == 0, err[-2000:]
    return peak


def forked_children(pid: int) -> list[int]:
    """The processes forked from `pid` that still run its program (its decode workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and (stat.parent / "cmdline").read_bytes() == Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def kill_mid_build(args: list[str], home: Path) -> list[tuple[int, int | None]]:
    """Start `ganops train`, SIGKILL it while its workers decode into the half-built cache; their (pid, start ticks)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "train", *args],
        cwd=REPO,
        env={**os.environ, "GANOPS_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        workers, deadline = [], time.monotonic() + 120
        while not (workers and list(home.glob("cache/images/.*.new-*/images.npy"))) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            workers = forked_children(proc.pid)
        assert workers and proc.poll() is None, "the cache build was not caught under way"
        workers = [(w, start_ticks(w)) for w in workers]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return workers


def test_training_through_the_cache_keeps_memory_bounded(photos, tmp_path):
    args = ["-c", "rgb32", "--data", str(photos), "--no-validate", "--max-steps", "10", "--out", str(tmp_path / "out"), "--set", *SETTINGS]
    workers = kill_mid_build(args, tmp_path / "home")
    deadline = time.monotonic() + 10
    while any(same_process_alive(*w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [w for w in workers if same_process_alive(*w)]
    for pid, _ in left:
        os.kill(pid, signal.SIGKILL)  # they would hold the killed run's lock on the cache folder: the rerun would wait
    assert not left, "decode workers outlived the killed `ganops train`"
    peak_mb(args, tmp_path / "home")  # builds the cache (in worker processes), over what the kill left
    cached = peak_mb(args, tmp_path / "home")
    in_memory = peak_mb([*args, "--in-memory"], tmp_path / "home")
    # In memory the process holds the decoded set (20,000 x 3 x 32 x 32 = 59 MB, briefly twice while it is stacked);
    # through the cache only the pages its batches touched (10 steps of 32 images). Neither holds a float32 copy.
    data_mb = 20000 * 3 * 32 * 32 / 2**20
    assert in_memory - cached > 0.6 * data_mb, (cached, in_memory)
