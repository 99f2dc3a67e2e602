"""Orchestration overhead per retrain: wall time minus the time spent inside the flow's tasks (the components'
own work), with a Prefect server already running, against the embedded default (`ganops run` with no server: a
temporary server started for the run). Both run the smoke preset on the same project, MLflow on SQLite.

Usage: python benchmarks/bench_orchestration.py [--repeats 2]
Ends with: RESULT orchestration_overhead ours=<s> reference=<s> ratio=<ours/reference> s
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.integration import servers  # noqa: E402
from tests.integration.conftest import new_project, sh  # noqa: E402

# One retrain in a fresh interpreter (Prefect reads its settings at import), timed from before the Prefect API is
# reached: with PREFECT_API_URL set that is the running server, else a temporary one started here.
ONE_RUN = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from components.config import load_config
from components.orchestration.local_server import prefect_api
from flows.retrain import retrain
project = Path(sys.argv[1])
with prefect_api(project / ".ganops" / "prefect" / "server.log"):
    summary = retrain(config=load_config("smoke"), project_dir=str(project))
    wall = time.perf_counter() - t0
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
print(json.dumps({"wall": wall, "tasks": sum(t.total_run_time.total_seconds() for t in tasks), "n": len(tasks)}))
"""


def one_run(project: Path, env: dict) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "GANOPS_HOME")}
    done = subprocess.run([sys.executable, "-c", ONE_RUN, str(project)], cwd=REPO, capture_output=True, text=True,
                          env={**clean, "OMP_NUM_THREADS": "1", **env})
    if done.returncode != 0:
        sys.exit(f"retrain failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = new_project(root)
        subprocess.run([sys.executable, "-m", "flows.cli", "data", "import", "digits", "-C", str(project)], cwd=REPO,
                       check=True, capture_output=True)
        sh(project, "git", "add", "data.dvc", ".gitignore")
        sh(project, "git", "commit", "-qm", "digits")
        one_run(project, {})  # warm the dataset's extractor cache and the file cache for both modes
        embedded = [one_run(project, {}) for _ in range(args.repeats)]
        with servers.prefect_server(root, None) as prefect_env:
            server = [one_run(project, {"PREFECT_API_URL": prefect_env["PREFECT_API_URL"]}) for _ in range(args.repeats)]
    overhead = lambda runs: min(r["wall"] - r["tasks"] for r in runs)  # noqa: E731
    ours, reference = overhead(server), overhead(embedded)
    for name, runs in (("running server", server), ("embedded default", embedded)):
        for r in runs:
            print(f"{name}: wall {r['wall']:.1f} s, inside {r['n']} tasks {r['tasks']:.1f} s, overhead {r['wall'] - r['tasks']:.1f} s")
    print(f"RESULT orchestration_overhead ours={ours:.2f} reference={reference:.2f} ratio={ours / reference:.2f} s")


if __name__ == "__main__":
    main()
