"""The production topology as real local processes on 127.0.0.1: PostgreSQL (a cluster in a temporary folder),
moto's S3 server, `mlflow server` (PostgreSQL backend, S3 artifacts), `prefect server start` (PostgreSQL, its
scheduler on) and a process worker. Then what a user does: `ganops deploy`, `prefect deployment run`, and checks
of what a user would look at."""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration import servers
from tests.integration.conftest import new_project, sh

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "ganops-artifacts"
MODEL = "ganops-smoke"


def run(args, env, cwd=REPO, timeout=600):
    done = subprocess.run(args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    if servers.postgres_binaries() is None:
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine: apt-get install postgresql")
    root = tmp_path_factory.mktemp("service")
    with (
        servers.postgres(("mlflow", "prefect")) as db,
        servers.moto_s3(root, (BUCKET,)) as s3,
        servers.mlflow_server(
            root, db["mlflow"].replace("postgresql://", "postgresql+psycopg://", 1), f"s3://{BUCKET}/mlflow", s3
        ) as mlflow_url,
        servers.prefect_server(root, db["prefect"]) as prefect_env,
    ):
        project = new_project(root)
        env = {
            **prefect_env,
            "MLFLOW_TRACKING_URI": mlflow_url,
            "GANOPS_HOME": str(project / ".ganops"),
            "OMP_NUM_THREADS": "1",
            "MLFLOW_ENABLE_TELEMETRY": "false",
        }
        run([sys.executable, "-m", "flows.cli", "data", "import", "digits", "-C", str(project)], env)
        sh(project, "git", "add", "data.dvc", ".gitignore")
        sh(project, "git", "commit", "-qm", "digits v1")
        yield {"root": root, "project": project, "env": env, "s3": s3, "mlflow": mlflow_url}


@pytest.fixture(scope="module")
def deployed(service):
    out = run([sys.executable, "-m", "flows.cli", "deploy", "-C", str(service["project"])], service["env"])
    again = run([sys.executable, "-m", "flows.cli", "deploy", "-C", str(service["project"])], service["env"])
    return out, again


@contextlib.contextmanager
def prefect_client(env):
    """A client of the test's server (Prefect reads its settings at import, so the URL goes in its settings context)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        yield client


def wait_for_flow_run(env, flow_run_id, timeout=900):
    with prefect_client(env) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state and flow_run.state.is_final():
                return flow_run
            time.sleep(2)
    raise AssertionError(f"flow run {flow_run_id} did not finish within {timeout} s")


def test_deploy_creates_the_pool_and_deployments_and_is_idempotent(deployed):
    first, second = deployed
    assert "work pool ganops-process (process): created" in first and "work pool ganops-gpu (process): created" in first
    assert "work pool ganops-process (process): exists" in second
    for name in ("retrain/retrain-nightly", "retrain/retrain-on-demand", "retrain/retrain-on-data", "train/train-gpu"):
        assert f"deployment {name}" in second


def test_the_schedule_produces_scheduled_runs_and_the_cli_lists_answer(service, deployed):
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    env = service["env"]
    scheduled = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
    nightly = DeploymentFilter(name=DeploymentFilterName(any_=["retrain-nightly"]))
    deadline, runs = time.monotonic() + 120, []
    with prefect_client(env) as client:
        while time.monotonic() < deadline and not runs:
            runs = client.read_flow_runs(flow_run_filter=scheduled, deployment_filter=nightly)
            time.sleep(2)
    assert runs, "the scheduler made no runs of retrain-nightly"
    assert all(r.expected_start_time.hour == 3 and r.expected_start_time.minute == 0 for r in runs)  # cron 0 3 * * *
    for command in (["deployment", "ls"], ["work-pool", "ls"], ["artifact", "ls"], ["flow-run", "ls"]):
        run([str(BIN / "prefect"), *command], env)


def test_a_deployment_run_on_a_worker_registers_a_model_with_artifacts_in_s3(service, deployed):
    env, project = service["env"], service["project"]
    worker_log = service["root"] / "worker.log"
    with servers.process([str(BIN / "prefect"), "worker", "start", "--pool", "ganops-process"], worker_log, env=env, cwd=project):
        out = run([str(BIN / "prefect"), "deployment", "run", "retrain/retrain-on-demand", "--param", "preset=smoke"], env)
        flow_run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
        flow_run = wait_for_flow_run(env, flow_run_id)
    log = worker_log.read_text()
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{log[-4000:]}"
    assert "train step 40/40" in log  # training progress shows in the worker's log

    with prefect_client(env) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
    by_key = {a.key: a for a in artifacts}
    assert {"retrain-summary", "validation"} <= set(by_key)
    assert f"{MODEL} version 1: promoted to champion" in by_key["retrain-summary"].data
    assert service["mlflow"] in by_key["retrain-summary"].data  # the link to the MLflow run

    from mlflow import MlflowClient

    mlc = MlflowClient(service["mlflow"], service["mlflow"])
    champion = mlc.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == "1" and mlc.get_run(champion.run_id).info.status == "FINISHED"
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=service["s3"]["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page.get("Contents", [])]
    assert any(k.endswith("generator.safetensors") for k in keys), keys[:20]
    assert any(k.endswith("validation/report.json") for k in keys)
    lineage = run([sys.executable, "-m", "flows.cli", "lineage", f"{MODEL}@champion", "--json", "-C", str(project)], env)
    assert json.loads(lineage[lineage.index("{") :])["model"]["version"] == "1"


def test_two_runs_of_one_model_at_once_take_turns_and_lose_no_version(service, deployed):
    env, project = service["env"], service["project"]
    worker_log = service["root"] / "worker2.log"
    with servers.process([str(BIN / "prefect"), "worker", "start", "--pool", "ganops-process"], worker_log, env=env, cwd=project):
        ids = []
        for seed in (11, 12):  # two training results (the same one would be registered once, see test_crash)
            out = run(
                [
                    str(BIN / "prefect"),
                    "deployment",
                    "run",
                    "retrain/retrain-on-demand",
                    "--params",
                    json.dumps({"preset": "smoke", "overrides": [f"seed={seed}"]}),
                ],
                env,
            )
            ids.append(next(line.split()[-1] for line in out.splitlines() if "UUID" in line))
        flow_runs = [wait_for_flow_run(env, flow_run_id) for flow_run_id in ids]
    assert all(f.state.is_completed() for f in flow_runs), [f.state for f in flow_runs]

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    spans = []
    with prefect_client(env) as client:
        for flow_run in flow_runs:
            tasks = {
                t.name.rsplit("-", 1)[0]: t
                for t in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
            }
            spans.append((tasks["validate"].start_time, tasks["gate"].end_time))
    (a_start, a_end), (b_start, b_end) = sorted(spans)
    assert a_end <= b_start, f"the two retrains of {MODEL} overlapped: {spans}"  # the second waited for the first

    from mlflow import MlflowClient

    mlc = MlflowClient(service["mlflow"], service["mlflow"])
    versions = sorted(int(v.version) for v in mlc.search_model_versions(f"name='{MODEL}'"))
    assert versions == [1, 2, 3]  # no lost version
    aliases = mlc.get_registered_model(MODEL).aliases  # alias -> version: one champion by construction
    assert aliases["champion"] in {"1", "2", "3"}
    assert aliases.get("challenger") != aliases["champion"]


def flow_runs_of(env, deployment: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with prefect_client(env) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))


def test_the_training_deployment_is_found_by_its_pool_and_a_pool_without_one_is_named(service, deployed):
    from components.core.errors import ConfigError
    from components.orchestration.training_jobs import train_deployment

    with prefect_client(service["env"]) as client:
        assert train_deployment(client, "ganops-gpu") == "train/train-gpu"
        with pytest.raises(ConfigError, match="train.work_pool 'ganops-cpu': no deployment of the `train` flow"):
            train_deployment(client, "ganops-cpu")


def test_training_runs_as_its_own_job_on_the_gpu_pool(service, deployed):
    env, project, root = service["env"], service["project"], service["root"]
    with (
        servers.process([str(BIN / "prefect"), "worker", "start", "--pool", "ganops-process"], root / "worker3.log", env=env, cwd=project),
        servers.process([str(BIN / "prefect"), "worker", "start", "--pool", "ganops-gpu"], root / "gpu-worker.log", env=env, cwd=project),
    ):
        out = run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                "retrain/retrain-on-demand",
                "--params",
                json.dumps({"preset": "smoke", "overrides": ["seed=21", "train.work_pool=ganops-gpu"]}),
            ],
            env,
        )
        flow_run = wait_for_flow_run(env, next(line.split()[-1] for line in out.splitlines() if "UUID" in line))
    gpu_log, process_log = (root / "gpu-worker.log").read_text(), (root / "worker3.log").read_text()
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{process_log[-3000:]}\n{gpu_log[-3000:]}"
    assert "train step 40/40" in gpu_log and "train step" not in process_log  # trained by the GPU pool's worker
    jobs = flow_runs_of(env, "train-gpu")
    assert len(jobs) == 1 and jobs[0].state.is_completed() and jobs[0].parent_task_run_id is not None  # a subflow

    from mlflow import MlflowClient

    mlc = MlflowClient(service["mlflow"], service["mlflow"])
    run_id = jobs[0].parameters["run_id"]
    assert {a.path for a in mlc.list_artifacts(run_id, "training")} >= {"training/result.json", "training/generator.safetensors"}
    version = next(v for v in mlc.search_model_versions(f"name='{MODEL}'") if v.run_id == run_id)
    assert version.tags["ganops.train_key"] and mlc.get_run(run_id).info.status == "FINISHED"
    assert mlc.get_metric_history(run_id, "loss_d")[-1].step == 40  # the job's training history reached the run


def test_a_data_import_triggers_retrain_on_data_of_its_own_project_only(service, deployed, tmp_path):
    env, project = service["env"], service["project"]
    other = new_project(tmp_path)  # another project on the same server: its imports must not retrain this one
    assert "event ganops.dataset.updated sent" in run(
        [sys.executable, "-m", "flows.cli", "data", "import", "digits", "-C", str(other)], {**env, "GANOPS_HOME": str(other / ".ganops")}
    )
    assert "event ganops.dataset.updated sent" in run(
        [sys.executable, "-m", "flows.cli", "data", "import", "digits", "-C", str(project)], env
    )
    deadline, runs = time.monotonic() + 120, []
    while time.monotonic() < deadline and not runs:
        runs = flow_runs_of(env, "retrain-on-data")
        time.sleep(2)
    time.sleep(5)  # events are handled in order: had the other project's matched, its run would exist by now
    runs = flow_runs_of(env, "retrain-on-data")
    assert len(runs) == 1, f"{len(runs)} runs of retrain-on-data after one import in its project"
