"""`ganops audit` on a real project (Prefect, MLflow on SQLite, DVC with a local remote, the smoke preset): every
link passes on a fresh champion, and one byte changed in each link's evidence (an export file, the registered
weights, the registered code, the config artifact, a DVC cache file, the validation report), a code commit that does
not exist, or an alias moved behind the ledger's back makes the audit fail at that link. Also: the lineage JSON
uses real booleans, `ganops lineage` exits 1 on a changed export, and the run shows its dataset in MLflow."""

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from components.core.names import TAG_CODE_GIT_REV, TAG_DATA_DIRTY, TAG_DATASET_MD5
from components.core.paths import state_dir
from components.presets import load_config
from components.registry import tracking as registry
from flows.cli import app
from tests.integration.conftest import digits_project

pytestmark = pytest.mark.slow
runner = CliRunner()
MODEL = "ganops-smoke"


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server):
    from flows.retrain import retrain

    project = digits_project(tmp_path_factory.mktemp("audit"))
    events = project.parent / "openlineage.jsonl"
    transport = {
        "OPENLINEAGE__TRANSPORT__TYPE": "file",
        "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": str(events),
        "OPENLINEAGE__TRANSPORT__APPEND": "true",
    }
    os.environ.update(transport)
    try:
        first = retrain(config=load_config("smoke"), project_dir=str(project))
    finally:
        for key in transport:
            os.environ.pop(key)
    assert first["version"] == "1" and first["decision"]["promote"]
    return project


def audit(project, ref=f"{MODEL}@champion"):
    result = runner.invoke(app, ["audit", ref, "-C", str(project), "--json"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert (result.exit_code == 0) == report["ok"]
    return report


def flip(path: Path, offset: int = -20) -> None:
    """Change one byte of `path` (again: change it back). DVC keeps its cache read-only."""
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def artifacts(project) -> Path:
    return state_dir(project) / "mlartifacts"


def registered(project, pattern: str) -> Path:
    found = [p for p in artifacts(project).rglob(pattern) if "/models/" in p.as_posix()]
    assert len(found) == 1, found
    return found[0]


def run_artifact(project, name: str) -> Path:
    found = [p for p in artifacts(project).rglob(name) if "/models/" not in p.as_posix()]
    assert len(found) == 1, found
    return found[0]


def dvc_cache_file(project) -> Path:
    md5 = registry.client(project).get_model_version(MODEL, "1").tags[TAG_DATASET_MD5]
    listing = json.loads((project / ".dvc/cache/files/md5" / md5[:2] / f"{md5[2:]}.dir").read_text())
    obj = listing[7]["md5"]
    return project / ".dvc/cache/files/md5" / obj[:2] / obj[2:]


def test_a_fresh_champion_passes_every_link(project):
    report = audit(project)
    assert report["ok"] and report["version"] == "1", json.dumps(report, indent=1)
    status = {link["name"]: link["status"] for link in report["links"]}
    assert [link["number"] for link in report["links"]] == list(range(1, 11))
    for name in ("export", "weights", "model code", "config", "data", "validation", "promotion", "run records"):
        assert status[name] == "PASS", report
    assert status["code commit"] in ("PASS", "WARN")  # WARN in a working copy with uncommitted edits
    text = runner.invoke(app, ["audit", MODEL, "-C", str(project)]).output
    assert "every link verified" in text and "1797 files" in text


@pytest.mark.parametrize(
    "link, locate",
    [
        ("export", lambda project: state_dir(project) / "exports" / MODEL / "v1" / "generator.onnx"),
        ("weights", lambda project: registered(project, "*.safetensors")),
        ("model code", lambda project: registered(project, "weights.py")),
        ("config", lambda project: run_artifact(project, "resolved.json")),
        ("data", dvc_cache_file),
        ("validation", lambda project: run_artifact(project, "report.json")),
        ("run records", lambda project: run_artifact(project, "decision.json")),
        ("run records", lambda project: run_artifact(project, "summary.json")),
    ],
)
def test_one_byte_changed_fails_the_audit_at_its_link(project, link, locate):
    path = locate(project)
    flip(path)
    try:
        report = audit(project)
        assert not report["ok"] and report["first_failure"] == link, report
    finally:
        flip(path)
    assert audit(project)["ok"]


def test_objects_the_cache_lacks_are_fetched_from_the_remote_or_named_with_it(project):
    import shutil

    mlc = registry.client(project)
    cached = dvc_cache_file(project)
    md5 = registry.client(project).get_model_version(MODEL, "1").tags[TAG_DATASET_MD5]
    listing = project / ".dvc/cache/files/md5" / md5[:2] / f"{md5[2:]}.dir"
    remote = project.parent / "remote" / "files/md5" / cached.parent.name / cached.name
    aside = project.parent / "aside"
    aside.mkdir(exist_ok=True)
    # As after `dvc gc`: the object and the listing gone from the cache, the remote has both. The version is
    # also recorded as trained on an uncommitted data.dvc, so no git revision names the dataset: fetched by md5.
    shutil.move(cached, aside / "object")
    shutil.move(listing, aside / "listing")
    mlc.set_model_version_tag(MODEL, "1", TAG_DATA_DIRTY, "True")
    try:
        link = audit(project)["links"][4]
        assert link["status"] == "WARN" and "1797 files from the DVC remote" in link["evidence"], link
        assert cached.is_file() and listing.is_file()
        mlc.set_model_version_tag(MODEL, "1", TAG_DATA_DIRTY, "False")
        # Gone from the cache and the remote: the audit names the file, its md5 and the remote.
        cached.unlink()
        shutil.move(remote, aside / "remote-object")
        report = audit(project)
        evidence = report["links"][4]["evidence"]
        assert report["first_failure"] == "data", report
        assert f"(md5 {cached.parent.name}{cached.name}) is missing from the DVC cache and from the DVC remote 'local'" in evidence
        assert str(project.parent / "remote") in evidence, evidence
    finally:
        mlc.set_model_version_tag(MODEL, "1", TAG_DATA_DIRTY, "False")
        if not remote.exists():
            shutil.move(aside / "remote-object", remote)
        if not cached.exists():
            shutil.copyfile(remote, cached)
    assert audit(project)["ok"]


def test_a_code_commit_missing_from_the_repository_fails_link_7(project):
    mlc = registry.client(project)
    rev = mlc.get_model_version(MODEL, "1").tags[TAG_CODE_GIT_REV]
    if rev == "unknown":
        pytest.skip("ganops does not run from a git checkout here")
    mlc.set_model_version_tag(MODEL, "1", TAG_CODE_GIT_REV, "0" * 40)
    try:
        report = audit(project)
        assert report["first_failure"] == "code commit" and "0" * 40 in report["links"][6]["evidence"]
    finally:
        mlc.set_model_version_tag(MODEL, "1", TAG_CODE_GIT_REV, rev)


def test_an_alias_moved_outside_the_ledger_fails_link_8(project):
    mlc = registry.client(project)
    mlc.set_registered_model_alias(MODEL, "challenger", "1")
    try:
        report = audit(project)
        assert report["first_failure"] == "promotion" and "challenger" in report["links"][7]["evidence"]
    finally:
        mlc.delete_registered_model_alias(MODEL, "challenger")
    assert audit(project)["ok"]


def test_lineage_json_has_booleans_and_a_changed_export_exits_1(project):
    result = runner.invoke(app, ["lineage", MODEL, "-C", str(project), "--json"])
    chain = json.loads(result.output[result.output.index("{") :])
    assert chain["validation"]["success"] is True and chain["dataset"]["data_dvc_uncommitted"] is False
    assert chain["dataset"]["code_dirty"] in (True, False) and chain["validation"]["images"] == 1797
    card = state_dir(project) / "exports" / MODEL / "v1" / "MODEL_CARD.md"
    flip(card)
    try:
        changed = runner.invoke(app, ["lineage", MODEL, "-C", str(project)])
        assert changed.exit_code == 1 and "MISMATCH" in changed.output
    finally:
        flip(card)


def test_the_run_shows_its_dataset_commit_and_user_in_mlflow(project):
    mlc = registry.client(project)
    mv = mlc.get_model_version(MODEL, "1")
    run = mlc.get_run(mv.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == mv.tags[TAG_DATASET_MD5] and dataset_input.dataset.source_type == "dvc"
    assert json.loads(dataset_input.dataset.source)["dvc_remote"].endswith("remote")
    assert json.loads(dataset_input.dataset.profile)["images"] == 1797
    assert run.data.tags["mlflow.user"] not in ("", "unknown") or not os.environ.get("USER")
    assert run.data.tags.get("mlflow.source.git.commit") == mv.tags[TAG_CODE_GIT_REV] or mv.tags[TAG_CODE_GIT_REV] == "unknown"
    assert run.data.params["data.dvc_file"] == "data.dvc" and "validation.min_class_fraction" in run.data.params
    import mlflow

    info = mlflow.models.get_model_info(f"models:/{MODEL}/1")
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 16]  # the smoke preset's z_dim
    assert list(info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, 8, 8]


def test_reproduce_retrains_from_the_record_and_matches_bitwise(project):
    result = runner.invoke(app, ["audit", MODEL, "-C", str(project), "--json", "--reproduce"])
    report = json.loads(result.output[result.output.index("{") :])
    link = report["links"][-1]
    assert (link["number"], link["name"]) == (11, "reproduce") and report["links"][8]["name"] == "synthetic"
    assert link["status"] == "PASS" and "bitwise equal" in link["evidence"], link


def test_weights_that_differ_fail_the_reproduction():
    import torch

    from components.lineage.audit import check_reproduction
    from components.lineage.reproduce import compare_weights

    a = {"w": torch.zeros(3), "b": torch.ones(2)}
    assert compare_weights(a, {k: v.clone() for k, v in a.items()}) == (True, 0.0, [])
    equal, worst, odd = compare_weights(a, {"w": torch.tensor([0.0, 0.5, 0.0]), "c": torch.ones(1)})
    assert not equal and worst == 0.5 and odd == ["b", "c"]
    assert check_reproduction(False, 0.5, [], elsewhere=False).status == "FAIL"
    assert check_reproduction(False, 0.5, [], elsewhere=True).status == "WARN"


def test_the_flow_emitted_openlineage_start_and_complete_with_dataset_and_model(project):
    mlc = registry.client(project)
    mv = mlc.get_model_version(MODEL, "1")
    events = [json.loads(line) for line in (project.parent / "openlineage.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert {e["run"]["runId"].replace("-", "") for e in events} == {mv.run_id}
    assert {e["job"]["name"] for e in events} == {f"retrain.{MODEL}"}
    (dataset,) = events[1]["inputs"]
    assert dataset["namespace"].endswith("remote") and dataset["facets"]["version"]["datasetVersion"] == mv.tags[TAG_DATASET_MD5]
    (model,) = events[1]["outputs"]
    assert model["name"] == f"models/{MODEL}" and model["facets"]["version"]["datasetVersion"] == "1"
