"""Issue 30 item 10: alias moves made outside ganops reach the ledger as they happen. A real `mlflow server` (SQL
backend, webhooks on) calls a real `ganops webhook serve` process on 127.0.0.1; ganops's own moves are told apart,
each outside move or deletion becomes one `outside_move` entry, and forged, replayed or repeated deliveries append
nothing."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from components.promotion import ledger, moves, outside
from components.promotion.receiver import WEBHOOK_PATH
from tests.integration.servers import BIN, free_port, mlflow_server, process, wait_for

pytestmark = pytest.mark.slow
MODEL = "hooked"
SECRET = "a-test-secret-of-32-characters!!"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The MLflow server (SQLite backend, deliveries to loopback over http allowed), the receiver, the webhook."""
    root = tmp_path_factory.mktemp("webhook")
    server_env = {
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    with mlflow_server(root, f"sqlite:///{root}/mlflow.db", str(root / "artifacts"), server_env) as url:
        env = {"MLFLOW_TRACKING_URI": url, "GANOPS_WEBHOOK_SECRET": SECRET}
        port, project = free_port(), root / "project"
        project.mkdir()
        log = root / "receiver.log"
        args = [str(BIN / "ganops"), "webhook", "serve", "--port", str(port), "-C", str(project)]
        with process(args, log, env=env) as proc:
            wait_for(f"http://127.0.0.1:{port}/health", proc, log)
            hook = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
            done = _ganops(env, "webhook", "register", "--url", hook, "-C", str(project))
            assert done.returncode == 0 and hook in done.stdout, done.stderr
            again = _ganops(env, "webhook", "register", "--url", hook, "-C", str(project))
            assert again.returncode == 0 and hook in again.stdout, again.stderr
            mlc = _client({"env": env})
            assert [w.name for w in mlc.list_webhooks()] == ["ganops-alias-moves"]  # replaced, not a second webhook
            yield {"env": env, "hook": hook, "log": log, "project": project}


def _ganops(env: dict, *args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([str(BIN / "ganops"), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def _client(stack):
    from mlflow import MlflowClient

    return MlflowClient(stack["env"]["MLFLOW_TRACKING_URI"], stack["env"]["MLFLOW_TRACKING_URI"])


def _handled(stack) -> int:
    """Deliveries the receiver has answered (one log line each)."""
    return sum(1 for line in stack["log"].read_text().splitlines() if " delivery " in line or "refused a delivery" in line)


def _wait(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _post(stack, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(stack["hook"], data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _signed(data: dict, stamp: int | None = None, delivery: str | None = None, secret: str = SECRET) -> tuple[bytes, dict]:
    body = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "x", "data": data}).encode()
    delivery, stamp_s = delivery or str(uuid.uuid4()), str(stamp or int(time.time()))
    sig = outside.signature(secret, delivery, stamp_s, body)
    return body, {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp_s, "X-MLflow-Signature": sig}


def test_outside_moves_become_entries_and_ganops_own_moves_do_not(stack):
    mlc = _client(stack)
    mlc.create_registered_model(MODEL)
    for _ in range(3):
        mlc.create_model_version(MODEL, "ganops-test:/weights")
    moves.move(mlc, MODEL, ledger.PROMOTE, "1", "first champion", moves.after_promote)
    moves.move(mlc, MODEL, ledger.PROMOTE, "2", "second champion", moves.after_promote)
    # ganops's own moves: champion 1, then champion 2 and previous_champion 1 -> three deliveries, all ignored
    _wait(lambda: _handled(stack) >= 3, "ganops's three alias deliveries")
    assert [e.action for e in ledger.load_chain(mlc, MODEL).entries] == [ledger.PROMOTE, ledger.PROMOTE]

    mlc.set_registered_model_alias(MODEL, "champion", "3")  # as the MLflow UI would
    entry = _wait(lambda: ledger.load_chain(mlc, MODEL).entries[2:3], "the outside move's entry")[0]
    assert entry.action == outside.OUTSIDE_MOVE and entry.actor == outside.WEBHOOK_ACTOR and entry.version == "3"
    assert entry.aliases_before == {"champion": "2", "previous_champion": "1"}
    assert entry.aliases_after == {"champion": "3", "previous_champion": "1"}
    assert "alias champion set to version 3 outside ganops" in entry.reason and "does not say who" in entry.reason

    mlc.delete_registered_model_alias(MODEL, "previous_champion")
    gone = _wait(lambda: ledger.load_chain(mlc, MODEL).entries[3:4], "the deletion's entry")[0]
    assert gone.action == outside.OUTSIDE_MOVE and gone.aliases_after == {"champion": "3"} and gone.version == "1"

    verified = _ganops(stack["env"], "history", MODEL, "--verify", "-C", str(stack["project"]))
    assert verified.returncode == 0, verified.stderr  # the history is complete: no drift left to find later
    assert "outside_move" in verified.stdout
    # The next ganops move starts from the champion the registry really has.
    nxt = moves.move(mlc, MODEL, ledger.PROMOTE, "2", "back to 2", moves.after_promote)
    assert nxt.aliases_before == {"champion": "3"} and nxt.aliases_after == {"champion": "2", "previous_champion": "3"}
    _wait(lambda: _handled(stack) >= 7, "the deliveries of that promotion")
    assert len(ledger.load_chain(mlc, MODEL).entries) == 5


def test_forged_replayed_repeated_and_foreign_deliveries_append_nothing(stack):
    mlc = _client(stack)
    before = len(ledger.load_chain(mlc, MODEL).entries)
    data = {"name": MODEL, "alias": "champion", "version": "1"}
    body, headers = _signed(data, secret="not-the-secret-at-all")
    status, answer = _post(stack, body, headers)
    assert status == 401 and "does not match" in answer["error"]
    status, answer = _post(stack, *_signed(data, stamp=int(time.time()) - 3600))
    assert status == 401 and "replay" in answer["error"]
    status, answer = _post(stack, body, {})
    assert status == 401 and "x-mlflow-delivery-id is missing" in answer["error"]
    status, answer = _post(stack, b"x" * 70000, {})
    assert status == 413
    status, answer = _post(stack, *_signed({"alias": "champion"}))
    assert status == 422 and "data.name" in answer["error"]
    assert len(ledger.load_chain(mlc, MODEL).entries) == before

    # An outside move, then its delivery again with the same id (as MLflow's retries send it), even once the
    # registry has moved on: the entry that delivery made is the answer, nothing is appended.
    mlc.set_registered_model_alias(MODEL, "challenger", "1")
    recorded = _wait(lambda: ledger.load_chain(mlc, MODEL).entries[before : before + 1], "the challenger's entry")[0]
    delivery = recorded.reason.split("delivery ", 1)[1].split(",", 1)[0]
    body, headers = _signed({"name": MODEL, "alias": "challenger", "version": "3"}, delivery=delivery)
    first, second = _post(stack, body, headers), _post(stack, body, headers)
    assert first == second == (200, {"recorded": recorded.seq, "aliases_after": recorded.aliases_after})
    assert len(ledger.load_chain(mlc, MODEL).entries) == before + 1

    mlc.create_registered_model("not-ganops")  # no ledger: not ganops's to record
    mlc.create_model_version("not-ganops", "ganops-test:/weights")
    status, answer = _post(stack, *_signed({"name": "not-ganops", "alias": "champion", "version": "1"}))
    assert status == 200 and "ignored" in answer and not ledger.ledger_exists(mlc, "not-ganops")


@pytest.mark.parametrize(
    "env, args, words",
    [
        ({"GANOPS_WEBHOOK_SECRET": ""}, ["serve"], "GANOPS_WEBHOOK_SECRET is not set"),
        ({"GANOPS_WEBHOOK_SECRET": "short"}, ["serve"], "GANOPS_WEBHOOK_SECRET holds 5 characters"),
        ({"MLFLOW_TRACKING_URI": ""}, ["serve"], "MLFLOW_TRACKING_URI must name the MLflow server"),
        ({"MLFLOW_TRACKING_URI": "sqlite:///x.db"}, ["register", "--url", "http://h:1/mlflow-webhook"], "not sqlite:///x.db"),
        ({}, ["register", "--url", "http://h:1/wrong"], "ending in /mlflow-webhook"),
    ],
)
def test_bad_settings_are_one_line_before_anything_starts(tmp_path, env, args, words):
    full = {"GANOPS_WEBHOOK_SECRET": SECRET, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", **env}
    done = _ganops(full, "webhook", *args, "-C", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and words in done.stderr, done.stderr
