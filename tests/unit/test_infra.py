"""The deployment files parse, pin their images, and agree with each other and with the code: pool names, ports,
environment names, entrypoints and parameters. (Docker cannot run on the test machines: these files are checked,
not built.)"""

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


def prefect_spec() -> dict:
    return yaml.safe_load((INFRA / "prefect.yaml").read_text())


def compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def test_every_deployment_entrypoint_loads_a_flow(monkeypatch):
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(REPO)
    spec = prefect_spec()
    assert spec["deployments"]
    flows = set()
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        flows.add(flow.name)
        assert set(deployment.get("parameters", {})) <= set(flow.parameters.properties)
    assert flows == {"retrain", "train", "rebalance"}


def test_deployment_presets_exist_and_templates_name_the_env_ganops_deploy_sets():
    from components.orchestration.deploy import PROJECT_ENV, SOURCE_ENV, read_plan
    from components.orchestration.events import RESOURCE_ENV
    from components.presets import preset_names

    spec = prefect_spec()
    templates = set(re.findall(r"\{\{ \$(\w+) \}\}", (INFRA / "prefect.yaml").read_text()))
    assert templates == {SOURCE_ENV, PROJECT_ENV, RESOURCE_ENV}
    for deployment in spec["deployments"]:
        if deployment["entrypoint"].endswith((":retrain", ":rebalance")):
            assert deployment["parameters"]["preset"] in preset_names()
    plan = read_plan()
    assert plan.pools == {"ganops-process": "process", "ganops-gpu": "process"}
    assert "retrain/retrain-on-data" in plan.deployments and "train/train-gpu" in plan.deployments
    assert plan.models == {"ganops-digits"}


def test_the_training_job_deployment_is_found_by_the_pool_the_config_names():
    from components.orchestration.training_jobs import TRAIN_FLOW
    from components.presets import load_config

    train = [d for d in prefect_spec()["deployments"] if d["entrypoint"].endswith(f":{TRAIN_FLOW}")]
    assert [d["work_pool"]["name"] for d in train] == ["ganops-gpu"]
    assert load_config("digits", ["train.work_pool=ganops-gpu"]).train.work_pool == "ganops-gpu"


def test_the_data_trigger_matches_this_projects_events_only(tmp_path):
    from components.orchestration.events import DATASET_UPDATED, RESOURCE_ENV, dataset_resource

    trigger = next(d for d in prefect_spec()["deployments"] if d["name"] == "retrain-on-data")["triggers"][0]
    assert trigger["expect"] == [DATASET_UPDATED]
    assert trigger["match"]["prefect.resource.id"] == f"{{{{ ${RESOURCE_ENV} }}}}"  # set by ganops deploy per project
    one, other = dataset_resource(tmp_path / "a" / "project"), dataset_resource(tmp_path / "b" / "project")
    assert one != other and one.startswith("ganops.dataset.project.")
    assert dataset_resource(tmp_path / "a" / "x" / ".." / "project") == one


def test_compose_images_are_pinned_and_services_agree():
    services = compose()["services"]
    for name, service in services.items():
        image = service.get("image", "")
        if image and not image.startswith("ganops:"):
            tag = image.rsplit(":", 1)[-1] if ":" in image else ""
            assert tag and tag != "latest", f"service {name}: image {image!r} is not pinned"
    env = services["worker"]["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "4200:4200" in services["prefect-server"]["ports"] and "5000:5000" in services["mlflow"]["ports"]
    assert services["worker"]["command"][-1] == "ganops-process"
    assert services["gpu-worker"]["command"][-1] == "ganops-gpu"
    from components.orchestration.deploy import PROJECT_ENV, SOURCE_ENV

    assert {PROJECT_ENV, SOURCE_ENV} <= set(env)
    mlflow_cmd = services["mlflow"]["command"]
    assert mlflow_cmd[mlflow_cmd.index("--backend-store-uri") + 1].startswith("postgresql+psycopg://")
    databases = set(re.findall(r"CREATE DATABASE (\w+)", (INFRA / "postgres-init.sql").read_text()))
    assert {"mlflow", "prefect"} <= databases


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda", "Dockerfile.serve"])
def test_dockerfiles_pin_the_base_and_install_from_the_lock(dockerfile):
    text = (INFRA / dockerfile).read_text()
    base = re.search(r"^ARG BASE=(\S+)", text, re.M).group(1)  # the default base; make images may pass another
    assert ":" in base and not base.endswith(":latest")
    assert "-c /opt/ganops/requirements.lock" in text
    for copied in re.findall(r"^COPY (?!--from=)(\S+) ", text, re.M):
        copied = re.sub(r"\$\{WHEELS\}", re.search(r"^ARG WHEELS=(\S+)", text, re.M).group(1), copied)
        assert (REPO / copied).exists(), copied
    if dockerfile.endswith("cuda"):
        assert "torch==2.13.0" in text  # the CUDA build of the version the lock pins
        assert "torch==2.13.0" in (REPO / "requirements.lock").read_text()


def test_gpu_job_template_requests_gpus_and_reads_credentials_from_a_secret():
    template = json.loads((INFRA / "k8s" / "gpu-job-template.json").read_text())
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    assert container["envFrom"][0]["secretRef"]["name"]
    variables = template["variables"]["properties"]
    assert variables["gpus"]["default"] >= 1 and variables["image"]["default"] == compose()["services"]["gpu-worker"]["image"]


def test_multi_node_jobs_are_indexed_and_the_rendezvous_service_selects_pod_0():
    template = json.loads((INFRA / "k8s" / "gpu-job-template.json").read_text())
    spec = template["job_configuration"]["job_manifest"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == "{{ nodes }}"
    variables = template["variables"]["properties"]
    service = yaml.safe_load((INFRA / "k8s" / "rdzv-service.yaml").read_text())
    selector = service["spec"]["selector"]
    assert selector["batch.kubernetes.io/job-completion-index"] == "0"
    assert selector["ganops-rdzv"] == variables["rdzv_group"]["default"]
    assert spec["template"]["metadata"]["labels"] == {"ganops-rdzv": "{{ rdzv_group }}"}
    host, port = variables["env"]["default"]["GANOPS_RDZV_ENDPOINT"].split(":")
    assert host == service["metadata"]["name"] and int(port) == service["spec"]["ports"][0]["port"]
