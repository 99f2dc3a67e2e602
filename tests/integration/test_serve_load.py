"""`ganops serve` as a real process on 127.0.0.1 under concurrent clients: one-image requests share forward passes and
each still gets the bytes it gets alone, none lost or answered twice; `--workers` processes each verify the export
and /metrics sums them; a client that hangs up mid-body is no server error; an export folder whose manifest was
re-hashed is checked against the version's registry tag."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from components.serving.formats import MANIFEST, MODEL_CARD
from tests.integration.servers import free_port, process, wait_for
from tests.integration.test_serve import GANOPS, registry
from tests.unit.test_serving import make_export


def metric(base: str, name: str) -> float:
    """The sum of every sample of `name` in /metrics (0 when there is none)."""
    text = urllib.request.urlopen(f"{base}/metrics", timeout=30).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " "))


@contextlib.contextmanager
def serving(tmp_path: Path, workers: int) -> Iterator[tuple[int, str, Path]]:
    """`ganops serve` of a fresh export as a process on 127.0.0.1, ready: (port, base URL, its log); stopped after."""
    folder = make_export(tmp_path)
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with process([GANOPS, "serve", str(folder), "--port", str(port), "--workers", str(workers), "-C", str(tmp_path)], log) as proc:
        wait_for(f"{base}/readyz", proc, log)
        yield port, base, log


def generate(conn: http.client.HTTPConnection, seed: int) -> tuple[int, bytes, str | None]:
    conn.request("POST", "/v1/generate", json.dumps({"n": 1, "seed": seed, "format": "npy"}), {"content-type": "application/json"})
    r = conn.getresponse()
    return r.status, r.read(), r.getheader("x-ganops-seed")


def test_16_concurrent_one_image_clients_share_forward_passes_and_each_gets_its_unbatched_bytes(tmp_path):
    with serving(tmp_path, workers=1) as (port, base, log):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seeds = list(range(64))
        alone = {seed: generate(conn, seed)[1] for seed in seeds}  # one request at a time: each its own forward pass
        passes_before = metric(base, "ganops_serve_batch_rows_count")
        answers: list[tuple[int, int, bytes, str | None]] = []

        def client(k: int) -> None:
            own = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for seed in seeds[k::16] * 5:
                answers.append((seed, *generate(own, seed)))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        passes = metric(base, "ganops_serve_batch_rows_count") - passes_before
        served = metric(base, 'ganops_serve_requests_total{endpoint="/v1/generate",status="200"}')
    assert len(answers) == 16 * 4 * 5 and {status for _, status, _, _ in answers} == {200}
    assert all(body == alone[seed] and header == str(seed) for seed, _, body, header in answers), "an answer changed in a batch"
    assert served == len(alone) + len(answers)  # every request answered once: none lost, none twice
    assert passes < len(answers), f"{passes:.0f} forward passes for {len(answers)} concurrent requests: nothing coalesced"


def test_workers_each_verify_the_export_and_metrics_sum_them(tmp_path):
    with serving(tmp_path, workers=2) as (port, base, log):
        deadline = time.monotonic() + 120
        while len(re.findall(r"Application startup complete", log.read_text())) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        for seed in range(40):  # a new connection each: the kernel spreads them over the workers
            generate(http.client.HTTPConnection("127.0.0.1", port, timeout=30), seed)
        total = metric(base, 'ganops_serve_requests_total{endpoint="/v1/generate",status="200"}')
        images = metric(base, "ganops_serve_images_total")
    text = log.read_text()
    workers = set(re.findall(r"Started server process \[(\d+)\]", text))
    assert len(workers) == 2 and text.count("serving m version 1 from") == 3  # the parent's check, then each worker's
    assert total == 40 and images == 40  # summed over both workers, whichever answered


def test_a_client_that_hangs_up_mid_body_is_counted_499_not_an_error_and_logs_no_traceback(tmp_path):
    with serving(tmp_path, workers=1) as (port, base, log):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b'POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"n": ')
                time.sleep(0.2)  # the server has the headers and part of the body, then the client is gone
        deadline = time.monotonic() + 10
        while metric(base, 'ganops_serve_requests_total{endpoint="/v1/generate",status="499"}') < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        closed = metric(base, 'ganops_serve_requests_total{endpoint="/v1/generate",status="499"}')
        internal = metric(base, 'ganops_serve_errors_total{kind="internal"}')
        server_errors = metric(base, 'ganops_serve_requests_total{endpoint="/v1/generate",status="500"}')
        ok = urllib.request.urlopen(urllib.request.Request(f"{base}/v1/generate", b"{}", {"content-type": "application/json"}), timeout=30)
        assert ok.status == 200
    text = log.read_text()
    assert closed == 3 and internal == 0 and server_errors == 0
    assert "Traceback" not in text and text.count("the client hung up before its request was complete") == 3


def rehash(folder: Path, name: str) -> None:
    """Change a file and write its new sha256 into the manifest: the folder verifies against itself."""
    (folder / name).write_text((folder / name).read_text() + "\nedited\n")
    manifest = json.loads((folder / MANIFEST).read_text())
    data = (folder / name).read_bytes()
    manifest["files"][name] = {**manifest["files"][name], "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def test_an_export_folder_with_a_rehashed_manifest_is_refused_by_the_registry_tag_and_unchecked_says_so(tmp_path, monkeypatch):
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "GANOPS_HOME"):  # no registry unless given below
        monkeypatch.delenv(key, raising=False)
    uri, _ = registry(tmp_path)
    folder = tmp_path / "exports" / "m" / "v1"
    rehash(folder, MODEL_CARD)
    project = tmp_path / "project"
    project.mkdir()
    refused = subprocess.run(
        [GANOPS, "serve", str(folder), "-C", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert "recorded on m version 1 in the registry; refusing to serve it" in refused.stderr.strip().splitlines()[-1]

    port, log = free_port(), tmp_path / "serve.log"
    with process([GANOPS, "serve", str(folder), "--port", str(port), "--workers", "1", "-C", str(project)], log) as proc:
        wait_for(f"http://127.0.0.1:{port}/readyz", proc, log)
    text = log.read_text()
    assert "no registry configured" in text and "checked against its own manifest only" in text
