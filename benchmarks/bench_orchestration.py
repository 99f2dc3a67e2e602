"""Orchestration overhead per retrain: wall time minus the components' own time, with a Prefect server already
running, against the embedded default (`ganops run` with no server: a temporary server started for the run).
Both run the smoke preset on the same project, MLflow on SQLite, a new seed per run (nothing reused).

The components' own time is the time inside the flow's tasks plus the import of the component modules the flow
uses (torch, pandas, ...), measured in a fresh interpreter without Prefect in the same run: a plain script calling
the same functions pays both. What remains is Prefect's import, the flow engine, the API calls and the bookkeeping.
Each run's line also shows the total with every import.

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
from components.presets import load_config
from components.orchestration.local_server import prefect_api
from flows.retrain import retrain
imports = time.perf_counter() - t0
project = Path(sys.argv[1])
with prefect_api(project / ".ganops" / "prefect" / "server.log"):
    summary = retrain(config=load_config("smoke", [f"seed={sys.argv[2]}"]), project_dir=str(project))
    wall = time.perf_counter() - t0
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
print(json.dumps({"wall": wall, "imports": imports, "tasks": sum(t.total_run_time.total_seconds() for t in tasks), "n": len(tasks)}))
"""


# The component modules flows/retrain.py imports, imported alone in a fresh interpreter (no Prefect).
COMPONENT_IMPORTS = """
import ast, sys, time
t0 = time.perf_counter()
modules = sorted({n.module for n in ast.walk(ast.parse(open("flows/retrain.py").read()))
                  if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("components")})
for name in modules:
    __import__(name)
assert "prefect" not in sys.modules, "a component imports prefect at module level"
print(time.perf_counter() - t0)
"""


def component_imports(repeats: int = 3) -> float:
    times = [
        float(subprocess.run([sys.executable, "-c", COMPONENT_IMPORTS], cwd=REPO, capture_output=True, text=True, check=True).stdout)
        for _ in range(repeats)
    ]
    return min(times)


def one_run(project: Path, env: dict, seed: int) -> dict:
    """A full retrain: a new seed each time, so nothing is reused (the same training key would skip training and
    registration)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "GANOPS_HOME")}
    done = subprocess.run(
        [sys.executable, "-c", ONE_RUN, str(project), str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**clean, "OMP_NUM_THREADS": "1", **env},
    )
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
        subprocess.run(
            [sys.executable, "-m", "flows.cli", "data", "import", "digits", "-C", str(project)], cwd=REPO, check=True, capture_output=True
        )
        sh(project, "git", "add", "data.dvc", ".gitignore")
        sh(project, "git", "commit", "-qm", "digits")
        one_run(project, {}, 0)  # warm the dataset's extractor cache and the file cache for both modes
        embedded = [one_run(project, {}, 1 + i) for i in range(args.repeats)]
        with servers.prefect_server(root, None) as prefect_env:
            server = [one_run(project, {"PREFECT_API_URL": prefect_env["PREFECT_API_URL"]}, 100 + i) for i in range(args.repeats)]
    own_imports = component_imports()
    overhead = lambda runs: min(r["wall"] - r["tasks"] - own_imports for r in runs)  # noqa: E731
    ours, reference = overhead(server), overhead(embedded)
    print(f"component imports alone (fresh interpreter, no Prefect): {own_imports:.1f} s")
    for name, runs in (("running server", server), ("embedded default", embedded)):
        for r in runs:
            print(
                f"{name}: wall {r['wall']:.1f} s, inside {r['n']} tasks {r['tasks']:.1f} s, all imports {r['imports']:.1f} s; "
                f"overhead {r['wall'] - r['tasks'] - own_imports:.1f} s ({r['wall'] - r['tasks']:.1f} s with the component imports)"
            )
    print(f"RESULT orchestration_overhead ours={ours:.2f} reference={reference:.2f} ratio={ours / reference:.2f} s")


if __name__ == "__main__":
    main()
