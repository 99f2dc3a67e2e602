"""Versions registered before the stage-package layout (tests/fixtures/legacy_models.tar.gz: the artifact folders of
two versions registered by commit 9c11529, each with its own copy of the old flat `components/`) still load: as MLflow pyfunc models in a fresh process, the
way `mlflow models serve` loads them, and through ganops' own weights loader, the way the gate re-scores an old
champion."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow
ARCHIVE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_models.tar.gz"
LOAD = """
import json, sys
import mlflow, numpy as np
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
expected = np.load(sys.argv[3])
out = np.asarray(model.predict(expected["input"]))
import components
print(json.dumps({"max_diff": float(np.abs(out - expected["output"]).max()), "components": components.__file__}))
"""


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("legacy")
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(root, filter="data")  # the data filter refuses links and paths out of root
    return root / "legacy_models"


def register_fixture(tmp_path: Path, fixtures: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlc = MlflowClient(uri, uri)
    experiment = mlc.create_experiment("legacy", artifact_location=(tmp_path / "artifacts").as_uri())
    run = mlc.create_run(experiment)
    mlc.log_artifacts(run.info.run_id, str(fixtures / name), "generator")
    mlc.create_registered_model(name)
    version = mlc.create_model_version(name, f"{run.info.artifact_uri}/generator", run.info.run_id)
    mlc.set_terminated(run.info.run_id)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # set_*_uri export these: undone after the test, so
        monkeypatch.delenv(key, raising=False)  # later tests' servers in this worker do not inherit this registry
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # an earlier test in this process may have set another registry
    return uri, str(version.version)


@pytest.mark.parametrize("name", ["dcgan", "cdcgan"])
def test_old_versions_load_as_pyfunc_models_with_their_own_code(tmp_path, fixtures, name, monkeypatch):
    uri, version = register_fixture(tmp_path, fixtures, name, monkeypatch)
    done = subprocess.run(
        [sys.executable, "-c", LOAD, uri, f"models:/{name}/{version}", str(fixtures / f"{name}_expected.npz")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"MLFLOW_ENABLE_TELEMETRY": "false", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["max_diff"] < 1e-6
    assert "/code/components/" in result["components"]  # the version's own copy, not today's package


@pytest.mark.parametrize("name", ["dcgan", "cdcgan"])
def test_old_versions_load_with_todays_weights_loader(tmp_path, fixtures, name, monkeypatch):
    from components.registry.models import download_weights
    from components.training.weights import load_generator

    uri, version = register_fixture(tmp_path, fixtures, name, monkeypatch)
    from mlflow import MlflowClient

    with download_weights(MlflowClient(uri, uri).get_model_version(name, version)) as weights:
        generator, spec, _ = load_generator(weights)
    expected = np.load(fixtures / f"{name}_expected.npz")
    x = torch.from_numpy(expected["input"])
    z, y = (x[:, :-1], x[:, -1].long()) if spec.conditional else (x, None)
    with torch.no_grad():
        np.testing.assert_allclose(generator(z, y).numpy(), expected["output"], atol=1e-6)


def test_registered_weights_with_a_flipped_byte_are_refused_naming_the_file(tmp_path, fixtures, monkeypatch):
    """The sha256 recorded at registration is checked at every download: the gate's re-scoring of the champion,
    export, rollback and `ganops fid` all load through it."""
    from mlflow import MlflowClient

    from components.core.atomic import file_digest
    from components.core.errors import RegistryError
    from components.registry.models import download_weights

    uri, version = register_fixture(tmp_path, fixtures, "dcgan", monkeypatch)
    mlc = MlflowClient(uri, uri)
    stored = next((tmp_path / "artifacts").rglob("*.safetensors"))
    mlc.set_model_version_tag("dcgan", version, "ganops.weights_sha256", file_digest(stored))
    with download_weights(mlc.get_model_version("dcgan", version)) as weights:
        assert weights.is_file()  # untouched: loads
    assert not weights.exists()  # the download is removed after use
    data = bytearray(stored.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    stored.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match=rf"dcgan version {version}: its weights {stored.name} .* not the .* recorded at registration"):
        with download_weights(mlc.get_model_version("dcgan", version)):
            pass
