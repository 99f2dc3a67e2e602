"""`ganops serve` as a real process on 127.0.0.1 over a real MLflow registry: it refuses to start on a changed
export naming the file; with --follow it swaps in the version the alias moves to without failing a request, and
keeps serving the old one when the new export fails verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from components.registry.models import record_export
from components.serving.export import manifest_digest
from components.serving.formats import TORCHSCRIPT
from tests.integration import servers
from tests.integration.servers import free_port, process, wait_for
from tests.unit.test_serving import make_export

GANOPS = str(Path(sys.executable).parent / "ganops")


def registry(tmp_path: Path):
    """A SQLite registry with model m, versions 1-3, each with a verified export recorded on it; champion -> 1."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlc = MlflowClient(uri, uri)
    mlc.create_registered_model("m")
    for v in ("1", "2", "3"):
        folder = make_export(tmp_path, version=v)
        mlc.create_model_version("m", (tmp_path / f"g{v}.safetensors").as_uri())
        record_export(mlc, "m", v, folder, manifest_digest(folder))
    mlc.set_registered_model_alias("m", "champion", "1")
    return uri, mlc


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            r.read()
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_serve_refuses_a_changed_export_and_follows_the_alias_without_dropping_requests(tmp_path):
    uri, mlc = registry(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    flip(tmp_path / "exports" / "m" / "v3" / TORCHSCRIPT)

    refused = subprocess.run(
        [GANOPS, "serve", "m@3", "-C", str(project)], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{TORCHSCRIPT} is changed (against the sha256 in manifest.json)" in refused.stderr and "v3" in refused.stderr

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with process(
        [GANOPS, "serve", "m@champion", "--follow", "--poll-s", "0.3", "--port", str(port), "--workers", "1", "-C", str(project)],
        log,
        env=env,
    ) as proc:
        wait_for(f"{base}/readyz", proc, log)
        answers, stop = [], threading.Event()

        def load():
            while not stop.is_set():
                status, headers = post(f"{base}/v1/generate", {"n": 4, "seed": 5})
                answers.append((status, headers.get("x-ganops-version")))

        workers = [threading.Thread(target=load) for _ in range(3)]
        for w in workers:
            w.start()
        try:
            time.sleep(1)
            mlc.set_registered_model_alias("m", "champion", "2")  # as `ganops promote` or `rollback` would
            deadline = time.monotonic() + 30
            while not (answers and answers[-1][1] == "2") and time.monotonic() < deadline:
                time.sleep(0.1)
            mlc.set_registered_model_alias("m", "champion", "3")  # its export fails verification
            time.sleep(2)
        finally:
            stop.set()
            for w in workers:
                w.join()
        metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
        model = json.loads(urllib.request.urlopen(f"{base}/v1/model").read())

    assert {s for s, _ in answers} == {200}, "a request failed during a swap"
    versions = [v for _, v in answers]
    assert versions[0] == "1" and "2" in versions and "3" not in versions and versions[-1] == "2"
    assert model["version"] == "2" and model["alias"] == "champion"
    assert 'ganops_serve_reloads_total{result="loaded"} 1.0' in metrics
    assert 'ganops_serve_reloads_total{result="refused"} 1.0' in metrics
    text = log.read_text()
    assert "moved to version 3, not loaded" in text and TORCHSCRIPT in text and "still serving version 2" in text


@pytest.mark.parametrize("arch", ["dcgan", "cdcgan"])
def test_the_api_answers_requests_generated_from_its_own_schema_by_that_schema_and_never_500(tmp_path, arch):
    """Property-based: schemathesis's own command line generates requests (valid and not) from the running server's
    OpenAPI schema and runs all its checks: no server error, every answer conforms to the schema."""
    folder = make_export(tmp_path, arch)
    port, log = free_port(), tmp_path / "serve.log"
    with process([GANOPS, "serve", str(folder), "--port", str(port), "--max-n", "16", "-C", str(tmp_path)], log) as proc:
        wait_for(f"http://127.0.0.1:{port}/readyz", proc, log)
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "40",
                "--seed",
                "1",
                "--generation-database",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Tested: 5" in done.stdout and "No issues found" in done.stdout  # every operation, POST /v1/generate too


def test_an_export_published_to_s3_is_served_from_there_and_a_partial_or_changed_one_is_refused(tmp_path, monkeypatch):
    """Against moto's S3 server on loopback: the manifest goes up last; `ganops serve s3://...` downloads, verifies
    and serves; a prefix a killed publisher left without its manifest, and a changed object, are refused."""
    import boto3

    from components.serving.publish import publish_export, published_manifest_digest

    folder = make_export(tmp_path)
    with servers.moto_s3(tmp_path, ("exports",)) as s3_env:
        for key, value in s3_env.items():
            monkeypatch.setenv(key, value)  # boto3 here and every ganops process below read the same variables
        url = publish_export(folder, "s3://exports/team")
        assert url == "s3://exports/team/m/v1" and published_manifest_digest(url) == manifest_digest(folder)
        s3 = boto3.client("s3")
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="exports", Prefix="team/")["Contents"]}
        assert "team/m/v1/manifest.json" in keys and "team/m/v1/generator.onnx" in keys
        for name in ("generator.onnx", "config.json"):  # what a publisher killed before its manifest leaves
            s3.upload_file(str(folder / name), "exports", f"team/m/v2/{name}")

        port, log = free_port(), tmp_path / "serve.log"
        with process([GANOPS, "serve", url, "--runtime", "onnx", "--port", str(port), "-C", str(tmp_path)], log) as proc:
            wait_for(f"http://127.0.0.1:{port}/readyz", proc, log)
            status, headers = post(f"http://127.0.0.1:{port}/v1/generate", {"n": 2, "seed": 1})
            assert status == 200 and headers["x-ganops-version"] == "1" and headers["x-ganops-runtime"] == "onnx"

        def serve_once(source):
            return subprocess.run(
                [GANOPS, "serve", source, "--runtime", "onnx", "-C", str(tmp_path)], capture_output=True, text=True, timeout=120
            )

        partial = serve_once("s3://exports/team/m/v2")
        assert partial.returncode == 2 and "s3://exports/team/m/v2 is not an export: no manifest.json" in partial.stderr
        data = bytearray((folder / "generator.onnx").read_bytes())
        data[len(data) // 2] ^= 0x01
        s3.put_object(Bucket="exports", Key="team/m/v1/generator.onnx", Body=bytes(data))
        changed = serve_once(url)
        assert changed.returncode == 2 and "generator.onnx is changed (against the sha256 in manifest.json)" in changed.stderr
