"""Data in S3: a real S3-compatible server (moto's standalone server) on loopback, reached through boto3 and
DVC's S3 remote; no in-process patching."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from components.core.errors import DataError
from components.data.importers import write_digits
from components.data.versioning import read_dvc_file
from components.presets import load_config
from flows.cli import app
from tests.integration.conftest import new_project, sh

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def s3_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    )
    deadline = time.time() + 30
    while True:
        try:
            boto3.client("s3").list_buckets()
            break
        except Exception:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)
    yield endpoint
    proc.terminate()
    proc.wait(10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def upload(folder: Path, bucket: str, prefix: str) -> None:
    s3 = boto3.client("s3")
    for path in sorted(folder.rglob("*.png")):
        s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


@pytest.fixture(scope="module")
def buckets(s3_server, tmp_path_factory):
    s3 = boto3.client("s3")
    for name in ("images", "dvc-store"):
        s3.create_bucket(Bucket=name)
    digits = tmp_path_factory.mktemp("src") / "digits"
    write_digits(digits)
    v1, v2 = digits.parent / "v1", digits.parent / "v2"
    for i, f in enumerate(sorted(digits.rglob("*.png"))):
        for version, keep in ((v1, i % 3 == 0), (v2, i % 3 == 1)):
            if keep:
                (version / f.parent.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(f, version / f.parent.name / f.name)
    upload(v1, "images", "digits/v1")
    upload(v2, "images", "digits/v2")
    s3.put_object(Bucket="images", Key="evil/../escape.png", Body=b"x")
    return s3_server


def test_empty_prefix_and_escaping_keys_are_refused(buckets, tmp_path):
    project = new_project(tmp_path)
    for url, message in (("s3://images/nothing-here", "holds no objects"), ("s3://images/evil", "outside the dataset folder")):
        result = runner.invoke(app, ["data", "import", url, "-C", str(project)])
        assert result.exit_code != 0 and isinstance(result.exception, DataError) and message in str(result.exception)
        assert not (project / "data").exists()  # nothing half-written


def test_import_push_pull_older_revision_and_retrain(buckets, tmp_path, prefect_server):
    from components.registry import tracking as registry
    from flows.retrain import retrain

    project = new_project(tmp_path)
    sh(project, sys.executable, "-m", "dvc", "remote", "add", "-d", "s3", "s3://dvc-store/ganops")
    # The endpoint stays out of git: .dvc/config.local.
    sh(project, sys.executable, "-m", "dvc", "remote", "modify", "--local", "s3", "endpointurl", buckets)
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "s3 remote")

    revs = {}
    for version in ("v1", "v2"):
        result = runner.invoke(app, ["data", "import", f"s3://images/digits/{version}", "-C", str(project)])
        assert result.exit_code == 0, result.output
        sh(project, "git", "add", "data.dvc", ".gitignore")
        sh(project, "git", "commit", "-qm", f"digits {version}")
        revs[version] = (sh(project, "git", "rev-parse", "HEAD").strip(), read_dvc_file(project / "data.dvc")["md5"])
    objects = boto3.client("s3").list_objects_v2(Bucket="dvc-store", Prefix="ganops/")
    assert objects["KeyCount"] > 0  # dvc push reached the S3 remote

    # Only the remote holds v1 now: drop the local cache, then retrain on v1's revision.
    shutil.rmtree(project / ".dvc" / "cache")
    working_copy = sorted(p.name for p in (project / "data" / "0").iterdir())
    summary = retrain(config=load_config("smoke", [f"data.revision={revs['v1'][0]}"]), project_dir=str(project))
    assert summary["dataset"]["md5"] == revs["v1"][1] and summary["dataset"]["data_git_rev"] == revs["v1"][0]
    version = registry.client(project).get_model_version(summary["model_name"], summary["version"])
    assert version.tags["ganops.dataset_md5"] == revs["v1"][1]
    assert sorted(p.name for p in (project / "data" / "0").iterdir()) == working_copy  # working copy untouched (v2)
    assert read_dvc_file(project / "data.dvc")["md5"] == revs["v2"][1]
