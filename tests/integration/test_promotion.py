"""Promotion through the ledger on a real registry (MLflow on SQLite): the gate's entries, promote with and without
--force, rollback in one command with its export rebuilt and verified, history --verify catching an alias moved in
MLflow and an entry edited by hand, reconcile, approval from a second process, concurrent appends, and bad input as
one line with exit 2."""

import json
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest
from typer.testing import CliRunner

from components.presets import load_config
from components.promotion import ledger
from components.promotion.moves import ANY_CHAMPION, after_reject, move
from components.registry import tracking as registry
from components.serving.export import verify_export
from flows.cli import app
from tests.integration.conftest import REPO, digits_project

pytestmark = pytest.mark.slow
runner = CliRunner()
MODEL = "ganops-smoke"


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server):
    from flows.retrain import retrain

    project = digits_project(tmp_path_factory.mktemp("promotion"))
    first = retrain(config=load_config("smoke"), project_dir=str(project))
    second = retrain(config=load_config("smoke", ["seed=1", "gate.rules.beats_champion.min_improvement=1000"]), project_dir=str(project))
    assert (first["version"], second["version"]) == ("1", "2") and not second["decision"]["promote"]
    return project


def ganops(project, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "GANOPS_HOME")}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "-C", str(project)], cwd=REPO, capture_output=True, text=True, env=env, timeout=300
    )


def one_line_error(done) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def aliases(project):
    return {k: str(v) for k, v in registry.client(project).get_registered_model(MODEL).aliases.items()}


def test_the_gate_writes_the_ledger_and_history_verifies(project):
    chain = ledger.load_chain(registry.client(project), MODEL)
    assert [(e.action, e.version) for e in chain.entries] == [("gate_promote", "1"), ("gate_reject", "2")]
    assert chain.entries[1].aliases_after == {"champion": "1", "challenger": "2"} and chain.entries[1].run_id
    result = runner.invoke(app, ["history", MODEL, "--verify", "-C", str(project)])
    assert result.exit_code == 0, result.output
    assert result.output.index("#2") < result.output.index("#1")  # newest first
    assert "verified: 2 entries" in result.output


def test_tags_a_kill_left_out_after_the_ledger_entry_are_written_by_the_rerun(project):
    from flows.retrain import retrain

    mlc = registry.client(project)
    mlc.delete_model_version_tag(MODEL, "1", "ganops.gate")  # as if killed after the entry, before the tags
    again = retrain(config=load_config("smoke"), project_dir=str(project))
    assert again["version"] == "1" and again["reused_version"] and again["decision"]["promote"]
    assert mlc.get_model_version(MODEL, "1").tags["ganops.gate"] == "promoted"
    assert len(ledger.load_chain(mlc, MODEL).entries) == 2  # the standing decision adds no entry


def test_promote_refuses_what_fails_the_gate_unless_forced_and_records_the_override(project):
    refused = one_line_error(ganops(project, "promote", MODEL, "2", "--reason", "try"))
    assert "version 2 fails the gate" in refused and "does not beat" in refused
    result = runner.invoke(app, ["promote", MODEL, "2", "--reason", "sharper samples", "--force", "-C", str(project)])
    assert result.exit_code == 0, result.output
    assert aliases(project) == {"champion": "2", "previous_champion": "1"}
    assert re.search(r"beats_champion +FAIL", result.output)  # the rules, as a table
    last = ledger.load_chain(registry.client(project), MODEL).last
    assert last.action == "promote" and "forced over" in last.reason
    assert [(r["name"], r["passed"]) for r in last.rules] == [
        ("validation_passed", True),
        ("relative_ceiling", True),
        ("beats_champion", False),
        ("infra_valid", True),
    ]
    folder = project / ".ganops" / "exports" / MODEL / "v2"
    assert verify_export(folder)["ok"]  # exported before the alias moved


def test_rollback_is_one_command_and_rebuilds_a_missing_export(project):
    shutil.rmtree(project / ".ganops" / "exports" / MODEL / "v1")
    result = runner.invoke(app, ["rollback", MODEL, "--reason", "v2 drops a digit", "--json", "-C", str(project)])
    assert result.exit_code == 0, result.output
    assert aliases(project) == {"champion": "1", "previous_champion": "2"}
    assert verify_export(project / ".ganops" / "exports" / MODEL / "v1")["ok"]
    assert runner.invoke(app, ["history", MODEL, "--verify", "-C", str(project)]).exit_code == 0


def test_an_alias_moved_in_mlflow_is_caught_and_reconciled(project):
    mlc = registry.client(project)
    mlc.set_registered_model_alias(MODEL, "champion", "2")  # as if moved in the MLflow UI
    line = one_line_error(ganops(project, "history", MODEL, "--verify"))
    assert "alias champion: the registry says 2" in line
    done = ganops(project, "reconcile", MODEL)
    assert done.returncode == 0 and "repaired alias champion" in done.stdout, done.stderr
    assert aliases(project)["champion"] == "1"


def test_approval_required_waits_as_candidate_until_approved_from_another_process(project):
    from flows.retrain import retrain

    model, mlc = "ganops-approval", registry.client(project)
    sets = [f"registry.model_name={model}", "gate.approval=required"]
    first = retrain(config=load_config("smoke", sets), project_dir=str(project))
    assert first["decision"]["verdict"] == "await_approval" and first["export"] is None
    assert {k: str(v) for k, v in mlc.get_registered_model(model).aliases.items()} == {"candidate": "1"}
    assert mlc.get_model_version(model, "1").tags["ganops.gate"] == "awaiting_approval"
    done = ganops(project, "approve", model, "1", "--reason", "looked at the samples")  # another process, later
    assert done.returncode == 0, done.stderr
    assert "relative_ceiling" in done.stdout and "pass" in done.stdout
    assert {k: str(v) for k, v in mlc.get_registered_model(model).aliases.items()} == {"champion": "1"}
    assert verify_export(project / ".ganops" / "exports" / model / "v1")["ok"]

    second = retrain(config=load_config("smoke", sets + ["seed=1", "gate.rules.beats_champion=null"]), project_dir=str(project))
    assert second["decision"]["verdict"] == "await_approval"
    assert "is not awaiting approval (the candidate is version 2)" in one_line_error(
        ganops(project, "approve", model, "1", "--reason", "x")
    )
    done = ganops(project, "reject", model, "2", "--reason", "the 7s look like 1s")
    assert done.returncode == 0, done.stderr
    assert {k: str(v) for k, v in mlc.get_registered_model(model).aliases.items()} == {"champion": "1", "challenger": "2"}
    chain = ledger.load_chain(mlc, model)
    assert [e.action for e in chain.entries] == ["awaiting_approval", "approve", "awaiting_approval", "reject"]
    assert chain.entries[1].actor and chain.entries[3].reason == "the 7s look like 1s"
    assert ganops(project, "history", model, "--verify").returncode == 0


def test_a_gate_judges_again_when_another_retrain_moved_the_champion_meanwhile(project, monkeypatch):
    """Two retrains on one registry (another project or machine, so no shared lock): the other one's gate commits
    right after this one scored the champion. The ledger's compare-and-set refuses the stale decision and this gate
    judges again against the champion at decision time."""
    from components.promotion.actions import promote
    from flows import retrain_tasks as flow
    from flows.retrain import retrain

    real, scored = flow.score_champion, []

    def racing(mlc, model, *args, **kwargs):
        champion = real(mlc, model, *args, **kwargs)
        if not scored:  # the concurrent retrain's gate lands now
            promote(mlc, project, model, "2", "the other retrain's gate", force=True)
        scored.append(champion.version)
        return champion

    monkeypatch.setattr(flow, "score_champion", racing)
    before = aliases(project)["champion"]
    third = retrain(config=load_config("smoke", ["seed=2"]), project_dir=str(project))
    assert before == "1" and scored == ["1", "2"]  # judged again, against the new champion
    assert third["champion_before"]["version"] == "2"
    last = ledger.load_chain(registry.client(project), MODEL).last
    assert last.version == third["version"] and last.action.startswith("gate_") and last.aliases_before["champion"] == "2"


def test_concurrent_appends_lose_no_entry_and_never_fork(project):
    uri = registry.tracking_uri(project)
    before = len(ledger.load_chain(registry.client(project), MODEL).entries)

    def appender(i):
        from mlflow import MlflowClient

        mlc = MlflowClient(uri, uri)
        for j in range(3):
            move(mlc, MODEL, "test", "2", f"writer {i} append {j}", after_reject, expected_champion=ANY_CHAMPION)

    threads = [threading.Thread(target=appender, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chain = ledger.load_chain(registry.client(project), MODEL)
    assert not chain.problems and len(chain.entries) == before + 12
    assert [e.seq for e in chain.entries] == list(range(1, before + 13))
    assert sorted(e.reason for e in chain.entries[before:]) == sorted(f"writer {i} append {j}" for i in range(4) for j in range(3))


def test_an_entry_edited_by_hand_is_caught_by_verify(project):
    mlc = registry.client(project)
    name = ledger.ledger_name(MODEL)
    first = min(mlc.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    mlc.set_model_version_tag(
        name, first.version, ledger.ENTRY_TAG, first.tags[ledger.ENTRY_TAG].replace('"reason":"', '"reason":"edited: ')
    )
    line = one_line_error(ganops(project, "history", MODEL, "--verify"))
    assert "ledger entry 1" in line and "does not match its hash" in line
    refused = one_line_error(ganops(project, "rollback", MODEL, "--reason", "x"))
    assert "ledger of ganops-smoke is damaged" in refused  # nothing moves on a damaged ledger


def test_bad_input_is_one_line_naming_it(project):
    assert "--reason is empty" in one_line_error(ganops(project, "promote", MODEL, "2", "--reason", " "))
    assert "no version or alias '9'" in one_line_error(ganops(project, "promote", MODEL, "9", "--reason", "x"))
    assert "'nope' is not in the registry" in one_line_error(ganops(project, "history", "nope"))


def judged_registry(tmp_path):
    """A project whose SQLite registry holds model m, versions 1 and 2, both promoted through the ledger (2 is the
    champion, 1 previous_champion) and tagged with their verdicts, as the gate leaves them; no training."""
    from components.core.names import GATE_PROMOTED, TAG_GATE
    from components.promotion.moves import after_promote

    project = tmp_path / "project"
    project.mkdir()
    mlc = registry.client(project)
    mlc.create_registered_model("m")
    for v in ("1", "2"):
        mlc.create_model_version("m", (tmp_path / f"g{v}.safetensors").as_uri())
        move(mlc, "m", ledger.GATE_PROMOTE, v, "gate: all rules passed", after_promote)
        mlc.set_model_version_tag("m", v, TAG_GATE, GATE_PROMOTED)
    return project, mlc


def test_a_deleted_ledger_or_its_deleted_newest_entry_fails_verify_audit_and_reconcile(tmp_path):
    project, mlc = judged_registry(tmp_path)
    assert "verified: 2 entries" in ganops(project, "history", "m", "--verify").stdout
    name = ledger.ledger_name("m")
    # The newest entry deleted and the aliases put back as the entry before says: the chain and the aliases agree,
    # but version 2's verdict tag says it was judged.
    mlc.delete_model_version(name, "2")
    mlc.delete_registered_model_alias("m", "previous_champion")
    mlc.set_registered_model_alias("m", "champion", "1")
    line = one_line_error(ganops(project, "history", "m", "--verify"))
    assert "version 2 carries the gate verdict" in line and name in line
    # The whole ledger deleted.
    mlc.delete_registered_model(name)
    for args in (("history", "m", "--verify"), ("reconcile", "m"), ("rollback", "m", "--to", "2", "--reason", "x")):
        line = one_line_error(ganops(project, *args))
        assert f"the promotion ledger {name} does not exist, but the aliases champion -> version 1" in line, (args, line)
    audited = ganops(project, "audit", "m@1", "--json")
    report = json.loads(audited.stdout[audited.stdout.index("{") :])
    link = next(link for link in report["links"] if link["name"] == "promotion")
    assert audited.returncode == 1 and link["status"] == "FAIL" and "does not exist" in link["evidence"], report
    assert not ledger.ledger_exists(mlc, "m")  # the refused commands did not start a new ledger
    assert {k: str(v) for k, v in mlc.get_registered_model("m").aliases.items()} == {"champion": "1"}
