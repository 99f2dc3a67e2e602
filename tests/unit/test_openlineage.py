"""OpenLineage events through the client's real file transport: nothing without configuration, a FAIL event with
its error message, and an unreachable backend as a warning instead of an exception."""

import json

from components.lineage import openlineage


def run():
    return openlineage.LineageRun(
        openlineage.run_uuid("0123456789abcdef0123456789abcdef"),
        "retrain.m",
        "m",
        "s3://bucket/dvc",
        "data",
        "72e131e0cd93ceeb743a1f9fa75849e9",
    )


def test_nothing_is_emitted_unless_configured(monkeypatch):
    for key in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE__TRANSPORT__TYPE"):
        monkeypatch.delenv(key, raising=False)
    assert not openlineage.configured()
    assert openlineage.configured({"OPENLINEAGE_URL": "http://127.0.0.1:5000"})
    assert openlineage.emit(run(), openlineage.START) is None


def test_a_fail_event_carries_the_error(tmp_path, monkeypatch):
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(log))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    assert openlineage.emit(run(), openlineage.FAIL, error="validation: ValidationFailed: rule x") is None
    (event,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert event["eventType"] == "FAIL" and event["run"]["runId"] == "01234567-89ab-cdef-0123-456789abcdef"
    assert event["run"]["facets"]["errorMessage"]["message"].startswith("validation")
    assert event["inputs"][0]["facets"]["version"]["datasetVersion"] == "72e131e0cd93ceeb743a1f9fa75849e9"
    assert event["outputs"] == []


def test_an_unreachable_backend_is_a_warning_not_an_error(monkeypatch):
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TIMEOUT", "2")
    problem = openlineage.emit(run(), openlineage.COMPLETE, "sqlite:///x.db", "3")
    assert problem is not None and problem.startswith("OpenLineage COMPLETE event not sent")


def test_credentials_never_leave_in_a_namespace():
    assert openlineage.public_uri("postgresql://user:pw@db:5432/mlflow?sslmode=require") == "postgresql://db:5432/mlflow"
    assert openlineage.public_uri("https://u:token@mlflow.example.com/") == "https://mlflow.example.com/"
    assert openlineage.public_uri("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"
    assert openlineage.public_uri("/srv/dvc-remote") == "/srv/dvc-remote"
