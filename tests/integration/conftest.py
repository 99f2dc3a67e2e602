import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect API for the whole session (it takes ~10-15 s to start)."""
    for var in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "GANOPS_HOME"):
        os.environ.pop(var, None)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def sh(cwd: Path, *args: str) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed: {done.stderr}"
    return done.stdout


def new_project(root: Path) -> Path:
    """A fresh git + DVC project with a local DVC remote, as a user would set one up."""
    project = root / "project"
    project.mkdir(parents=True)
    sh(project, "git", "init", "-q")
    sh(project, "git", "config", "user.email", "ci@ganops.test")
    sh(project, "git", "config", "user.name", "ci")
    sh(project, sys.executable, "-m", "dvc", "init", "-q")
    sh(project, sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(root / "remote"))
    sh(project, sys.executable, "-m", "dvc", "config", "core.analytics", "false")
    (project / ".gitignore").write_text("/.ganops/\n")
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "init")
    return project


def digits_project(root: Path) -> Path:
    """new_project with the bundled digits set imported through the CLI and data.dvc committed."""
    from typer.testing import CliRunner

    from flows.cli import app

    project = new_project(root)
    done = CliRunner().invoke(app, ["data", "import", "digits", "-C", str(project)])
    assert done.exit_code == 0, done.output
    sh(project, "git", "add", "data.dvc", ".gitignore")
    sh(project, "git", "commit", "-qm", "digits")
    return project
