"""Issue 30 item 8: a killed retrain's slot on a real Prefect server (`prefect server start` on 127.0.0.1) is released at
once by `ganops doctor`, or by the model's next run, when its holder process is gone; a live holder's slot never is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from components.orchestration.concurrency import LEASES, limit_name, lock_dir
from tests.integration.servers import BIN, prefect_server

pytestmark = pytest.mark.slow
MODEL = "slot-model"
# Holds MODEL's slot (waiting at most argv[2] seconds for it) until a line arrives on stdin, then leaves the block.
HOLDER = """
import sys, time
from pathlib import Path
from components.orchestration.concurrency import lock_dir, one_retrain_per_model
start = time.monotonic()
with one_retrain_per_model(sys.argv[1], float(sys.argv[2]), lock_dir(Path(sys.argv[3]))):
    print(f"held after {time.monotonic() - start:.1f} s", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with prefect_server(tmp_path_factory.mktemp("prefect"), None) as env:
        yield env


def _env(server: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **server, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _holder(server, project: Path, wait_s: float = 60) -> tuple[subprocess.Popen, str]:
    """A process holding the slot; returns it and its first line ("held after N s")."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, MODEL, str(wait_s), str(project)],
        env=_env(server),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip() if proc.stdout else ""
    assert line.startswith("held"), f"the holder did not get the slot: {line!r} {proc.stderr.read() if proc.stderr else ''}"
    return proc, line


def _active_slots(server) -> int:
    with urllib.request.urlopen(f"{server['PREFECT_API_URL']}/v2/concurrency_limits/{limit_name(MODEL)}", timeout=10) as r:
        return json.load(r)["active_slots"]


def _records(project: Path) -> list[Path]:
    return sorted((lock_dir(project) / LEASES).glob("*.json"))


def _doctor(server, project: Path) -> str:
    done = subprocess.run(
        [str(BIN / "ganops"), "doctor", "-C", str(project)], env=_env(server), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_doctor_releases_a_killed_holders_slot_at_once_and_leaves_a_live_one(server, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    live, _ = _holder(server, project)
    assert _active_slots(server) == 1 and len(_records(project)) == 1
    assert "released" not in _doctor(server, project)  # its holder runs: the slot stays
    assert _active_slots(server) == 1
    live.communicate("\n", timeout=60)  # leaves the block: released by the holder itself
    assert live.returncode == 0 and _active_slots(server) == 0 and _records(project) == []

    killed, _ = _holder(server, project)
    record = json.loads(_records(project)[0].read_text())
    assert record["pid"] == killed.pid and record["model"] == MODEL
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert _active_slots(server) == 1, "the killed holder's lease should still hold the slot (it runs out in 300 s)"
    out = _doctor(server, project)
    assert f"retrain slot of {MODEL} released (lease {record['lease_id']}; process {killed.pid} is gone)" in out
    assert _active_slots(server) == 0 and _records(project) == []
    assert "released" not in _doctor(server, project)  # nothing left: a second doctor finds nothing


def test_the_next_run_releases_a_killed_holders_slot_instead_of_waiting_for_the_lease(server, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    killed, _ = _holder(server, project)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    start = time.monotonic()
    nxt, line = _holder(server, project, wait_s=20)  # would time out after 20 s if it waited for the 300 s lease
    assert time.monotonic() - start < 20, line
    assert len(_records(project)) == 1 and json.loads(_records(project)[0].read_text())["pid"] == nxt.pid
    nxt.communicate("\n", timeout=60)
    assert nxt.returncode == 0 and _active_slots(server) == 0 and _records(project) == []


def test_a_live_holder_makes_the_next_run_wait_and_time_out_naming_the_slot(server, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    live, _ = _holder(server, project)
    waiter = subprocess.run(
        [sys.executable, "-c", HOLDER, MODEL, "3", str(project)], env=_env(server), capture_output=True, text=True, timeout=120
    )
    assert waiter.returncode != 0 and f"the retrain slot {limit_name(MODEL)} stayed taken for 3 s" in waiter.stderr
    assert _active_slots(server) == 1 and len(_records(project)) == 1  # the waiter took nothing and removed nothing
    live.communicate("\n", timeout=60)
    assert _active_slots(server) == 0
