"""`ganops deploy`: the work pools and deployments of infra/prefect.yaml on the Prefect server PREFECT_API_URL names.

Idempotent: pools are created only when missing, deployments are created or updated. The deployments run the
flows from this source tree (GANOPS_SOURCE_DIR) on the project's data (GANOPS_PROJECT_DIR), and retrain-on-data
fires on that project's dataset events only (GANOPS_DATASET_RESOURCE), all set here, so a deployment never stores
an unresolved `{{ $VAR }}` template.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.core.errors import ConfigError, GanopsError
from components.core.paths import SOURCE_ROOT
from components.orchestration.concurrency import ensure_limits
from components.orchestration.events import RESOURCE_ENV, dataset_resource
from components.presets import load_config

PREFECT_FILE = SOURCE_ROOT / "infra" / "prefect.yaml"
SOURCE_ENV, PROJECT_ENV = "GANOPS_SOURCE_DIR", "GANOPS_PROJECT_DIR"


@dataclass(frozen=True)
class DeployPlan:
    pools: dict[str, str]  # name -> type
    deployments: list[str]  # flow/deployment names
    models: set[str]  # the registered models the deployments' presets train


def read_plan(prefect_file: Path = PREFECT_FILE) -> DeployPlan:
    """The pools and deployments a prefect.yaml declares. Raises ConfigError naming the file and the key."""
    try:
        spec = yaml.safe_load(prefect_file.read_text()) or {}
        deployments = spec["deployments"]
        if not deployments:
            raise KeyError("deployments is empty")
        pools = {d["work_pool"]["name"]: d["work_pool"].get("type", "process") for d in deployments}
        names = [f"{d['entrypoint'].rsplit(':', 1)[1]}/{d['name']}" for d in deployments]
        parameters = [d.get("parameters") or {} for d in deployments]
    except (OSError, yaml.YAMLError, KeyError, TypeError, IndexError) as e:
        raise ConfigError(
            f"{prefect_file} is not a deployment file with deployments[].name, entrypoint and work_pool.name ({type(e).__name__}: {e})"
        ) from None
    # The retrain deployments name the models; the train job gets its config from them (rebalance trains none).
    models = {
        load_config(p["preset"], list(p.get("overrides") or [])).registry.model_name
        for d, p in zip(deployments, parameters, strict=True)
        if "preset" in p and d["entrypoint"].endswith(":retrain")
    }
    return DeployPlan(pools, names, models)


def api_url() -> str:
    """PREFECT_API_URL, required: deployments live on a server, not on the temporary one a single run starts."""
    url = os.environ.get("PREFECT_API_URL", "")
    if not url:
        raise GanopsError(
            "ganops deploy needs a Prefect server: start one (`prefect server start`) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (see docs/operations.md, 'Run it as a service')"
        )
    return url


def ensure_pools(pools: dict[str, str]) -> list[str]:
    """Create the work pools that do not exist yet; returns the names created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    created = []
    with get_client(sync_client=True) as client:
        for name, kind in pools.items():
            try:
                client.read_work_pool(name)
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(name=name, type=kind))
                created.append(name)
    return created


def deploy(project_dir: Path, prefect_file: Path = PREFECT_FILE) -> tuple[list[str], DeployPlan]:
    """Create missing pools and per-model concurrency limits, and deploy every deployment of `prefect_file` for
    `project_dir`. Returns (pools and limits created, the plan). Raises GanopsError with `prefect deploy`'s last
    lines when it fails."""
    api_url()
    plan = read_plan(prefect_file)
    created = ensure_pools(plan.pools) + ensure_limits(plan.models)
    env = {
        **os.environ,
        SOURCE_ENV: str(SOURCE_ROOT),
        PROJECT_ENV: str(Path(project_dir).resolve()),
        RESOURCE_ENV: dataset_resource(project_dir),
    }
    cmd = [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--prefect-file", str(prefect_file), "--all"]
    done = subprocess.run(cmd, cwd=SOURCE_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "; ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise GanopsError(f"prefect deploy --prefect-file {prefect_file} failed (exit {done.returncode}): {tail}")
    return created, plan
