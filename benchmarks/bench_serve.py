"""Serving throughput and latency: `ganops serve` against `mlflow models serve --env-manager local`, the same
registered generator (the smoke preset's champion, trained here by `ganops run`), both on 127.0.0.1.

Each cell runs CONCURRENCY client threads, each on its own keep-alive connection, for --seconds: requests/s,
images/s, p50 and p99 latency. ganops is asked for uint8 images (`format: npy`, what a client stores); MLflow's
scoring endpoint takes the latent rows as JSON and answers float images as JSON (its only format).

Usage: python benchmarks/bench_serve.py [--seconds 5]
Ends with: RESULT serve_images_per_s ours=<images/s> reference=<images/s> ratio=<ours/reference> images/s
(64 images per request, concurrency 16). Targets on 2 CPU cores: ratio >= 3, ganops p99 <= 50 ms for one image at
concurrency 1.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.integration import servers  # noqa: E402
from tests.integration.conftest import new_project, sh  # noqa: E402

BIN = Path(sys.executable).parent
MODEL = "ganops-smoke"
CELLS = [(1, 1), (1, 64), (16, 1), (16, 64)]  # (concurrency, images per request)


def ganops_request(n: int, i: int) -> tuple[str, bytes]:
    return "/v1/generate", json.dumps({"n": n, "seed": i, "format": "npy"}).encode()


def mlflow_request(z_dim: int):
    def build(n: int, i: int) -> tuple[str, bytes]:
        z = np.random.default_rng(i).standard_normal((n, z_dim), dtype=np.float32)
        return "/invocations", json.dumps({"inputs": z.tolist()}).encode()

    return build


def load(port: int, build, concurrency: int, n: int, seconds: float) -> dict:
    """Closed-loop clients: each sends its next request when the last is answered."""
    latencies, errors, stop = [], [], threading.Event()

    def client(k: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k * 1_000_000
        while not stop.is_set():
            path, body = build(n, i)
            start = time.perf_counter()
            conn.request("POST", path, body, {"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
                continue
            latencies.append(time.perf_counter() - start)
            i += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests_per_s": len(ms) / elapsed,
        "images_per_s": len(ms) * n / elapsed,
        "errors": len(errors),
        "p50_ms": statistics.median(ms) if ms else float("nan"),
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan"),
    }


def warm(port: int, build) -> None:
    for n in (1, 64):
        load(port, build, 1, n, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per cell")
    args = parser.parse_args()
    env = {"PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_ENABLE_TELEMETRY": "false"}
    with tempfile.TemporaryDirectory(prefix="ganops-bench-serve-") as tmp:
        project = new_project(Path(tmp))
        print("training the smoke preset's champion (ganops run) ...", flush=True)
        sh(project, str(BIN / "ganops"), "data", "ensure")
        sh(project, str(BIN / "ganops"), "run", "--config", "smoke")
        uri = f"sqlite:///{project / '.ganops' / 'mlflow.db'}"
        from mlflow import MlflowClient

        mv = MlflowClient(uri, uri).get_model_version_by_alias(MODEL, "champion")
        z_dim = json.loads(Path(mv.tags["ganops.export_dir"], "manifest.json").read_text())["input"]["z"][1]
        results = {}
        ours_port, theirs_port = servers.free_port(), servers.free_port()
        ours = [str(BIN / "ganops"), "serve", f"{MODEL}@champion", "--port", str(ours_port), "-C", str(project)]
        theirs = [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "-p",
            str(theirs_port),
            "--workers",
            "1",
        ]
        for name, cmd, port, build, ready in (
            ("ganops", ours, ours_port, ganops_request, "/readyz"),
            ("mlflow", theirs, theirs_port, mlflow_request(z_dim), "/ping"),
        ):
            log = Path(tmp) / f"{name}.log"
            with servers.process(cmd, log, env={**env, "MLFLOW_TRACKING_URI": uri}, cwd=project) as proc:
                servers.wait_for(f"http://127.0.0.1:{port}{ready}", proc, log)
                warm(port, build)
                for concurrency, n in CELLS:
                    cell = load(port, build, concurrency, n, args.seconds)
                    results[(name, concurrency, n)] = cell
                    print(
                        f"{name:7s} concurrency {concurrency:2d}, {n:2d} images/request: {cell['requests_per_s']:8.1f} req/s "
                        f"{cell['images_per_s']:9.1f} images/s  p50 {cell['p50_ms']:7.2f} ms  p99 {cell['p99_ms']:7.2f} ms"
                        f"{'  errors ' + str(cell['errors']) if cell['errors'] else ''}",
                        flush=True,
                    )
    ours_ips, ref_ips = results[("ganops", 16, 64)]["images_per_s"], results[("mlflow", 16, 64)]["images_per_s"]
    print(f"ganops p99 for 1 image at concurrency 1: {results[('ganops', 1, 1)]['p99_ms']:.2f} ms (target <= 50 ms)")
    print(f"RESULT serve_images_per_s ours={ours_ips:.1f} reference={ref_ips:.1f} ratio={ours_ips / ref_ips:.2f} images/s")


if __name__ == "__main__":
    main()
