import socket

import pytest

from components.core.errors import ConfigError, ValidationFailed
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
    ],
)
def test_orphaned_runs_are_this_hosts_runs_whose_process_is_gone(tags, alive, dead):
    assert orphaned(tags, "me", lambda pid, ticks: alive) is dead


def test_a_live_process_is_never_orphaned():
    from components.registry.tracking import owner_tags

    assert not orphaned(owner_tags(), socket.gethostname())
