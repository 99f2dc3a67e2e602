import os
import socket

import pytest

from components.core.errors import ConfigError, ValidationFailed
from components.core.processes import pid_namespace, start_ticks
from components.orchestration.concurrency import limit_name
from components.orchestration.retries import is_transient
from components.registry.tracking import orphaned


class FakeConnectError(Exception):
    pass


FakeConnectError.__name__ = "ConnectError"  # httpx's name, without importing httpx


def chained(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as e:
            raise outer from e
    except Exception as e:
        return e


@pytest.mark.parametrize(
    "exc,transient",
    [
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError("read timed out"), True),
        (FakeConnectError("all connection attempts failed"), True),
        (chained(RuntimeError("MLflow call failed"), ConnectionResetError()), True),
        (ValidationFailed("validation of data failed"), False),
        (ConfigError("bad key"), False),
        (chained(ConfigError("bad key"), TimeoutError()), False),  # our own verdict wins
        (ValueError("a bug"), False),
        (None, False),
    ],
)
def test_only_connection_failures_and_timeouts_are_retried(exc, transient):
    assert is_transient(exc) is transient


def test_limit_names_per_model():
    assert limit_name("ganops-digits") == "ganops-retrain-ganops-digits"


@pytest.mark.parametrize(
    "tags,alive,dead",
    [
        ({"ganops.host": "me", "ganops.pid": "12", "ganops.pid_start": "5"}, False, True),
        ({"ganops.host": "me", "ganops.pid": "12", "ganops.pid_start": "5"}, True, False),
        ({"ganops.host": "other", "ganops.pid": "12"}, False, False),  # another machine's run: never judged
        ({"ganops.host": "me"}, False, False),  # no owner recorded
        ({}, False, False),
        # Same host name, another pid namespace (two containers may share a hostname): never judged.
        ({"ganops.host": "me", "ganops.pid": "12", "ganops.pid_ns": "another-boot:4026531836"}, False, False),
        ({"ganops.host": "me", "ganops.pid": "12", "ganops.pid_ns": pid_namespace()}, False, True),
    ],
)
def test_orphaned_runs_are_this_hosts_runs_whose_process_is_gone(tags, alive, dead):
    assert orphaned(tags, "me", lambda pid, ticks: alive) is dead


def test_a_lease_record_is_judged_only_in_its_own_pid_namespace():
    from components.orchestration.concurrency import LeaseRecord

    gone = LeaseRecord("l", "m", "me", 2**22 + 1, None, pid_namespace())  # above pid_max: no such process
    assert gone.holder_gone("me") and not gone.holder_gone("other")
    assert not LeaseRecord("l", "m", "me", 2**22 + 1, None, "another-boot:1").holder_gone("me")
    live = LeaseRecord("l", "m", "me", os.getpid(), start_ticks(os.getpid()), pid_namespace())
    assert not live.holder_gone("me")


def test_a_live_process_is_never_orphaned():
    from components.registry.tracking import owner_tags

    assert not orphaned(owner_tags(), socket.gethostname())


def _wait_gone(pid: int, seconds: float = 15) -> bool:
    import time

    from components.core.processes import alive

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def _child_of(pid: int, seconds: float = 10) -> int:
    import time
    from pathlib import Path

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    return int(stat.parent.name)
            except (OSError, ValueError):
                continue
        time.sleep(0.1)
    raise AssertionError(f"process {pid} started no child")


@pytest.mark.parametrize("how", ["parent killed", "ctrl-c"])
def test_the_watchdog_stops_its_command(how):
    import os
    import signal
    import subprocess
    import sys

    if how == "parent killed":
        # A parent that starts a watched `sleep`, then dies by SIGKILL: no handler of its runs.
        parent = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os, subprocess, sys, time; subprocess.Popen([sys.executable, "
                "'-m', 'components.core.watchdog', str(os.getpid()), '--', 'sleep', '60']); time.sleep(60)",
            ]
        )
        watchdog = _child_of(parent.pid)
        command = _child_of(watchdog)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    else:
        watched = subprocess.Popen([sys.executable, "-m", "components.core.watchdog", str(os.getpid()), "--", "sleep", "60"])
        command = _child_of(watched.pid)
        watched.send_signal(signal.SIGINT)
        assert watched.wait(timeout=15) == 130
    assert _wait_gone(command), f"{how}: the watched command {command} still runs"


def test_model_refs_in_every_form():
    from components.registry.models import parse_model_ref

    assert parse_model_ref("gan") == ("gan", None)
    assert parse_model_ref("gan@champion") == ("gan", "champion")
    assert parse_model_ref("models:/gan/3") == ("gan", "3")
    assert parse_model_ref("models:/gan@champion") == ("gan", "champion")


def test_a_deployment_file_without_deployments_is_a_config_error(tmp_path):
    from components.orchestration.deploy import read_plan

    (tmp_path / "prefect.yaml").write_text("deployments: []\n")
    with pytest.raises(ConfigError, match="deployments"):
        read_plan(tmp_path / "prefect.yaml")
