"""What the containers test asks from inside the stack (run in the worker container: `python probe.py CHECK ...`).
It reads only what a user's client reads (Prefect's API, MLflow's registry, S3, the serving API, the export's
files) and prints one JSON line; a failed check exits 1 with one line naming it."""

import json
import os
import sys
import time
import urllib.request
from pathlib import Path


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(1)


def wait_run(flow_run_id: str, timeout: str) -> dict:
    """Poll the flow run until its state is final: its state name."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + float(timeout)
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run_id).state
            if state and state.is_final():
                return {"state": state.name, "message": state.message or ""}
            time.sleep(3)
    fail(f"flow run {flow_run_id} was not final after {timeout} s")
    return {}


def registry(model: str, bucket: str) -> dict:
    """The champion in MLflow's registry, its run FINISHED, and its run's artifacts as objects in S3."""
    import boto3
    from mlflow import MlflowClient

    client = MlflowClient()
    champion = client.get_model_version_by_alias(model, "champion")
    run = client.get_run(champion.run_id)
    if run.info.status != "FINISHED":
        fail(f"{model} v{champion.version}: run {champion.run_id} is {run.info.status}")
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", [])]
    run_keys = [k for k in keys if champion.run_id in k]
    if not run_keys:
        fail(f"{model} v{champion.version}: no object of run {champion.run_id} in s3://{bucket} ({len(keys)} objects)")
    return {"version": champion.version, "run_id": champion.run_id, "artifact_uri": run.info.artifact_uri, "objects": len(run_keys)}


def find_export(model: str, version: str) -> Path:
    manifests = [m.parent for m in Path("/project/.ganops").rglob("manifest.json") if model in m.parts and m.parent.name == f"v{version}"]
    if len(manifests) != 1:
        fail(f"expected one export of {model} v{version} under /project/.ganops, found {[str(m) for m in manifests]}")
    return manifests[0]


def serve(model: str, version: str, url: str, seed: str) -> dict:
    """The serving container serves this version, and its images are those the export's TorchScript makes from the
    same latents, which in turn match the export's golden images."""
    import numpy as np
    import torch
    from safetensors.numpy import load_file

    from components.serving.formats import GOLDEN, GOLDEN_TOLERANCE, TORCHSCRIPT
    from components.serving.runtime import channels_last_uint8, latents

    export = find_export(model, version)
    info = json.load(urllib.request.urlopen(f"{url}/v1/model", timeout=10))
    if str(info.get("version")) != version:
        fail(f"the serving container serves {info.get('model')} v{info.get('version')}, not the champion v{version}")
    module = torch.jit.load(str(export / TORCHSCRIPT), map_location="cpu").eval()
    golden = load_file(str(export / GOLDEN))

    def forward(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(z), *((torch.from_numpy(labels),) if labels is not None else ())).numpy()

    golden_diff = float(np.abs(forward(golden["z"], golden.get("labels")) - golden["images"]).max())
    if golden_diff > GOLDEN_TOLERANCE:
        fail(f"{export}: its TorchScript is {golden_diff} off its golden images (tolerance {GOLDEN_TOLERANCE})")
    n = 4
    request = urllib.request.Request(
        f"{url}/v1/generate",
        data=json.dumps({"n": n, "seed": int(seed), "format": "npy"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    import io

    served = np.load(io.BytesIO(urllib.request.urlopen(request, timeout=60).read()), allow_pickle=False)
    z_dim = int(golden["z"].shape[1])
    labels = (np.arange(n) % int(golden["num_classes"])) if "num_classes" in golden else None
    expected = channels_last_uint8(forward(latents(int(seed), n, z_dim), labels))
    diff = int(np.abs(served.astype(np.int16) - expected.astype(np.int16)).max())
    if served.shape != expected.shape or diff > 1:
        fail(f"served images differ from the export's: shapes {served.shape} vs {expected.shape}, max diff {diff}")
    return {"served_version": info.get("version"), "golden_max_abs_diff": golden_diff, "served_max_diff": diff, "export": str(export)}


CHECKS = {"wait-run": wait_run, "registry": registry, "serve": serve}

if __name__ == "__main__":
    name, *args = sys.argv[1:]
    print(json.dumps(CHECKS[name](*args)))
