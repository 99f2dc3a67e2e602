"""Serving throughput and latency: `ganops serve` against `mlflow models serve --env-manager local` and against a bare
reference, the same registered generator (the smoke preset's champion, trained here by `ganops run`), all on
127.0.0.1 and measured in the same run.

The bare reference is what the hardware gives: a minimal ASGI app (`bare_app` below, uvicorn with httptools and
uvloop, as many workers as ganops' default) that loads the same TorchScript file and answers `{"n", "seed"}` with
the uint8 npy images, with no validation, metrics, hashing or batching. The three servers run side by side; each cell
runs on one after the other (so a change in the machine's load falls on all three alike): CONCURRENCY client
threads, each on its own keep-alive connection, for --seconds: requests/s, images/s, p50 and p99 latency. ganops and the bare
app are asked for uint8 images (`format: npy`, what a client stores); MLflow's scoring endpoint takes the latent
rows as JSON and answers float images as JSON (its only format). Every ganops answer is checked to carry the seed it
was asked for, and ganops' own /metrics count to equal the answers the clients got (none lost, none twice). Then
10,000 one-image requests at concurrency 16 measure ganops' resident memory against idle, and locust (headless,
FastHttpUser) loads each server with 16 users for --locust-seconds.

Usage: python benchmarks/bench_serve.py [--seconds 5] [--locust-seconds 10]
Ends with: RESULT serve_images_per_s ours=<images/s> reference=<images/s> ratio=<ours/reference> images/s
(64 images per request, concurrency 16, against MLflow). Targets on 2 CPU cores (issue 31): one image at
concurrency 16 >= 3x MLflow's requests/s, p99 <= 50 ms and >= 0.67x the bare reference; 64 images at concurrency
16 >= 10x MLflow's images/s; one image at concurrency 1 p99 <= 10 ms; RSS after 10,000 requests < 2x idle.
"""

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.integration import servers  # noqa: E402
from tests.integration.conftest import new_project, sh  # noqa: E402

BIN = Path(sys.executable).parent
MODEL = "ganops-smoke"
CELLS = [(1, 1), (1, 64), (16, 1), (16, 64)]  # (concurrency, images per request)
SERVERS = ("ganops", "bare", "mlflow")
RSS_REQUESTS = 10_000
LOCUSTFILE = """
import json, random
from locust import task
from locust.contrib.fasthttp import FastHttpUser

Z_DIM = {z_dim}

class Client(FastHttpUser):
    @task
    def generate(self):
        seed = random.randrange(2**31)
        if {mlflow}:
            rng = random.Random(seed)
            body = {{"inputs": [[rng.gauss(0, 1) for _ in range(Z_DIM)]]}}
            path = "/invocations"
        else:
            body, path = {{"n": 1, "seed": seed, "format": "npy"}}, "/v1/generate"
        self.client.post(path, data=json.dumps(body), headers={{"content-type": "application/json"}})
"""


def bare_app():
    """The bare reference (run by uvicorn as `bench_serve:bare_app --factory`): POST {"n", "seed"} -> uint8 npy."""
    import io

    import torch

    torch.set_num_threads(int(os.environ.get("BARE_THREADS", "1")))
    model = torch.jit.load(os.environ["BARE_TORCHSCRIPT"], map_location="cpu").eval()
    z_dim = int(os.environ["BARE_Z_DIM"])

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        status, out, media = 200, b"ok", b"text/plain"
        if scope["path"] == "/v1/generate":
            request = json.loads(body)
            z = np.random.default_rng(request["seed"]).standard_normal((request["n"], z_dim), dtype=np.float32)
            with torch.no_grad():
                images = model(torch.from_numpy(z))
            buffer = io.BytesIO()
            np.save(buffer, ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
            out, media = buffer.getvalue(), b"application/octet-stream"
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", media)]})
        await send({"type": "http.response.body", "body": out})

    return app


def ganops_request(n: int, i: int) -> tuple[str, bytes]:
    return "/v1/generate", json.dumps({"n": n, "seed": i, "format": "npy"}).encode()


def mlflow_request(z_dim: int):
    def build(n: int, i: int) -> tuple[str, bytes]:
        z = np.random.default_rng(i).standard_normal((n, z_dim), dtype=np.float32)
        return "/invocations", json.dumps({"inputs": z.tolist()}).encode()

    return build


def load(port: int, build, concurrency: int, n: int, seconds: float = 0.0, requests: int = 0) -> dict:
    """Closed-loop clients: each sends its next request when the last is answered, for `seconds` or until
    `requests` were answered in all. Counts answers whose X-Ganops-Seed is not the seed sent."""
    latencies, errors, wrong, stop = [], [], [], threading.Event()

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
            seed = response.getheader("x-ganops-seed")
            if seed is not None and seed != str(i):
                wrong.append(i)
            i += 1
            if requests and len(latencies) >= requests:
                stop.set()
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    if seconds:
        time.sleep(seconds)
        stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    ms = sorted(x * 1000 for x in latencies)
    return {
        "answers": len(ms),
        "requests_per_s": len(ms) / elapsed,
        "images_per_s": len(ms) * n / elapsed,
        "errors": len(errors),
        "wrong_seed": len(wrong),
        "p50_ms": statistics.median(ms) if ms else float("nan"),
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan"),
    }


def warm(port: int, build) -> None:
    for n in (1, 64):
        load(port, build, 1, n, 0.5)
    load(port, build, 16, 1, 0.5)


def generated(port: int) -> float:
    """ganops' own count of answered generate requests (summed over its workers)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    line = next((x for x in text.splitlines() if x.startswith('ganops_serve_requests_total{endpoint="/v1/generate",status="200"}')), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def rss_mb(pid: int) -> float:
    """Resident memory of a server and its worker processes, MB."""
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def run_locust(tmp: Path, port: int, z_dim: int, mlflow: bool, seconds: float) -> dict:
    """locust --headless with 16 FastHttpUsers for `seconds`: its aggregated requests/s, p50, p99 and failures."""
    import csv

    name = "mlflow" if mlflow else f"p{port}"
    locustfile = tmp / f"locust_{name}.py"
    locustfile.write_text(LOCUSTFILE.format(z_dim=z_dim, mlflow=mlflow))
    prefix = tmp / f"locust_{name}"
    subprocess.run(
        [str(BIN / "locust"), "-f", str(locustfile), "--headless", "-u", "16", "-r", "16", "-t", f"{int(seconds)}s",
         "--host", f"http://127.0.0.1:{port}", "--only-summary", "--csv", str(prefix), "--loglevel", "WARNING"],
        check=False, capture_output=True, timeout=seconds + 120,
    )  # fmt: skip
    rows = list(csv.DictReader(Path(f"{prefix}_stats.csv").open()))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {
        "requests_per_s": float(total["Requests/s"]),
        "p50_ms": float(total["50%"]),
        "p99_ms": float(total["99%"]),
        "failures": int(total["Failure Count"]),
        "requests": int(total["Request Count"]),
    }


def commands(project: Path, uri: str, export_dir: Path, ports: dict, workers: int) -> dict:
    """Each server's command line, readiness path and extra environment."""
    uvicorn = [str(BIN / "python"), "-m", "uvicorn", "--app-dir", str(REPO / "benchmarks"), "bench_serve:bare_app", "--factory"]
    return {
        "ganops": ([str(BIN / "ganops"), "serve", f"{MODEL}@champion", "--port", str(ports["ganops"]), "-C", str(project)], "/readyz", {}),
        "bare": (
            [*uvicorn, "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--port", str(ports["bare"])],
            "/healthz",
            {"BARE_TORCHSCRIPT": str(export_dir / "generator.torchscript.pt"), "BARE_THREADS": "1"},
        ),
        "mlflow": (
            [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local", "--host", "127.0.0.1",
             "-p", str(ports["mlflow"]), "--workers", "1"],
            "/ping",
            {},
        ),
    }  # fmt: skip


def print_cell(name: str, concurrency: int, n: int, cell: dict) -> None:
    print(
        f"{name:7s} concurrency {concurrency:2d}, {n:2d} images/request: {cell['requests_per_s']:8.1f} req/s "
        f"{cell['images_per_s']:9.1f} images/s  p50 {cell['p50_ms']:7.2f} ms  p99 {cell['p99_ms']:7.2f} ms"
        f"{'  errors ' + str(cell['errors']) if cell['errors'] else ''}",
        flush=True,
    )


def measure(running: dict, builds: dict, args) -> dict:
    """Every cell on the three servers in turn (so a change in the machine's load falls on all of them alike), then
    ganops' exactly-once count and its memory after RSS_REQUESTS."""
    results: dict = {name: {} for name in running}
    before = generated(running["ganops"][1])
    for concurrency, n in CELLS:
        for name, (_, port) in running.items():
            results[name][(concurrency, n)] = cell = load(port, builds[name], concurrency, n, args.seconds)
            print_cell(name, concurrency, n, cell)
    ours, (proc, port) = results["ganops"], running["ganops"]
    answered, wrong = sum(c["answers"] for c in ours.values()), sum(c["wrong_seed"] for c in ours.values())
    counted = generated(port) - before
    print(f"ganops  exactly once: {answered} answers to the clients, {counted:.0f} counted by /metrics, {wrong} with another seed")
    ours["once"] = answered == counted and wrong == 0
    idle = rss_mb(proc.pid)
    heavy = load(port, builds["ganops"], 16, 1, requests=RSS_REQUESTS)
    ours["rss"] = (idle, rss_mb(proc.pid))
    print(f"ganops  RSS {idle:.0f} MB before, {ours['rss'][1]:.0f} MB after {heavy['answers']} more requests (all processes)", flush=True)
    return results


def measure_locust(running: dict, results: dict, tmp: Path, z_dim: int, seconds: float) -> None:
    for name, (_, port) in running.items():
        results[name]["locust"] = lc = run_locust(tmp, port, z_dim, name == "mlflow", seconds)
        print(
            f"{name:7s} locust 16 users, 1 image: {lc['requests_per_s']:8.1f} req/s  p50 {lc['p50_ms']:.0f} ms  "
            f"p99 {lc['p99_ms']:.0f} ms  failures {lc['failures']}/{lc['requests']}",
            flush=True,
        )


def report(results: dict) -> None:
    ours, bare, mlflow = (results[name] for name in SERVERS)
    print("\ncell                     ganops / mlflow    ganops / bare   (requests/s; images/s alike)")
    for cell in CELLS:
        o, m, b = ours[cell]["requests_per_s"], mlflow[cell]["requests_per_s"], bare[cell]["requests_per_s"]
        print(f"concurrency {cell[0]:2d}, {cell[1]:2d} images  {o / m:10.2f}x     {o / b:10.2f}x")
    o, m, b = (r["locust"]["requests_per_s"] for r in (ours, mlflow, bare))
    print(f"locust 16 users, 1 image  {o / m:10.2f}x     {o / b:10.2f}x")
    small, big, lone = ours[(16, 1)], ours[(16, 64)], ours[(1, 1)]
    targets = [
        ("1 image, concurrency 16: >= 3x MLflow req/s", small["requests_per_s"] / mlflow[(16, 1)]["requests_per_s"] >= 3),
        ("1 image, concurrency 16: p99 <= 50 ms", small["p99_ms"] <= 50),
        ("1 image, concurrency 16: >= 0.67x bare req/s", small["requests_per_s"] / bare[(16, 1)]["requests_per_s"] >= 0.67),
        ("64 images, concurrency 16: >= 10x MLflow images/s", big["images_per_s"] / mlflow[(16, 64)]["images_per_s"] >= 10),
        ("1 image, concurrency 1: p99 <= 10 ms", lone["p99_ms"] <= 10),
        ("no request lost or answered twice", ours["once"]),
        (f"RSS after {RSS_REQUESTS} requests < 2x idle", ours["rss"][1] < 2 * ours["rss"][0]),
    ]
    for text, met in targets:
        print(f"target {'MET    ' if met else 'NOT MET'} {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per cell")
    parser.add_argument("--locust-seconds", type=float, default=10.0, help="locust's run per server")
    args = parser.parse_args()
    env = {"PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_ENABLE_TELEMETRY": "false"}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="ganops-bench-serve-") as tmp:
        project = new_project(Path(tmp))
        print("training the smoke preset's champion (ganops run) ...", flush=True)
        sh(project, str(BIN / "ganops"), "data", "ensure")
        sh(project, str(BIN / "ganops"), "run", "--config", "smoke")
        uri = f"sqlite:///{project / '.ganops' / 'mlflow.db'}"
        from mlflow import MlflowClient

        from components.serving.service import default_workers

        mv = MlflowClient(uri, uri).get_model_version_by_alias(MODEL, "champion")
        export_dir = Path(mv.tags["ganops.export_dir"])
        z_dim = json.loads((export_dir / "manifest.json").read_text())["input"]["z"][1]
        ports = {name: servers.free_port() for name in SERVERS}
        builds = {"ganops": ganops_request, "bare": ganops_request, "mlflow": mlflow_request(z_dim)}
        running = {}
        with contextlib.ExitStack() as stack:
            for name, (cmd, ready, extra) in commands(project, uri, export_dir, ports, default_workers()).items():
                log = Path(tmp) / f"{name}.log"
                extra = {**env, "MLFLOW_TRACKING_URI": uri, "BARE_Z_DIM": str(z_dim), **extra}
                proc = stack.enter_context(servers.process(cmd, log, env=extra, cwd=project))
                servers.wait_for(f"http://127.0.0.1:{ports[name]}{ready}", proc, log)
                running[name] = (proc, ports[name])
            time.sleep(3)  # every worker up
            for name, (_, port) in running.items():
                warm(port, builds[name])
            results = measure(running, builds, args)
            measure_locust(running, results, Path(tmp), z_dim, args.locust_seconds)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    report(results)
    ours_ips, ref_ips = results["ganops"][(16, 64)]["images_per_s"], results["mlflow"][(16, 64)]["images_per_s"]
    print(f"RESULT serve_images_per_s ours={ours_ips:.1f} reference={ref_ips:.1f} ratio={ours_ips / ref_ips:.2f} images/s")


if __name__ == "__main__":
    main()
