"""Reverse lineage and withdrawal on a project with two data versions (the digits set, then a subset of it trained
while data.dvc was not yet committed): `ganops lineage --data` by md5 and by revision, the uncommitted data recorded
honestly (tag, lineage, audit WARN), and `ganops withdraw` moving the champion back to the unaffected version,
quarantining the affected export and refusing to serve or promote the withdrawn version, all in the ledger."""

import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from components.core.errors import RegistryError
from components.core.names import TAG_DATA_DIRTY, TAG_DATASET_MD5, TAG_EXPORT_DIR, TAG_WITHDRAWN
from components.core.paths import state_dir
from components.presets import load_config
from components.promotion import ledger
from components.registry import tracking as registry
from flows.cli import app
from tests.integration.conftest import digits_project, sh

pytestmark = pytest.mark.slow
runner = CliRunner()
MODEL = "ganops-smoke"


def cli(project, *args):
    return runner.invoke(app, [*args, "-C", str(project)])


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server):
    from flows.retrain import retrain

    root = tmp_path_factory.mktemp("withdraw")
    project = digits_project(root)
    first = retrain(config=load_config("smoke"), project_dir=str(project))
    subset = root / "subset"
    shutil.copytree(project / "data", subset)
    for i, png in enumerate(sorted(subset.rglob("*.png"))):
        if i % 3 == 0:
            png.unlink()
    assert cli(project, "data", "import", str(subset)).exit_code == 0  # data.dvc changed, not committed
    second = retrain(config=load_config("smoke"), project_dir=str(project))
    assert (first["version"], second["version"]) == ("1", "2")
    if not second["decision"]["promote"]:
        done = cli(project, "promote", MODEL, "2", "--force", "--reason", "try the subset")
        assert done.exit_code == 0, done.output
    sh(project, "git", "add", "data.dvc")
    sh(project, "git", "commit", "-qm", "digits subset")
    return project


def md5_of(project, version):
    return registry.client(project).get_model_version(MODEL, version).tags[TAG_DATASET_MD5]


def test_training_on_an_uncommitted_data_dvc_is_recorded_as_such(project):
    mlc = registry.client(project)
    assert mlc.get_model_version(MODEL, "1").tags[TAG_DATA_DIRTY] == "False"
    assert mlc.get_model_version(MODEL, "2").tags[TAG_DATA_DIRTY] == "True"
    chain = json.loads(cli(project, "lineage", f"{MODEL}@2", "--json").output)
    assert chain["dataset"]["data_dvc_uncommitted"] is True
    assert "NOT committed" in cli(project, "lineage", f"{MODEL}@2").output
    report = json.loads(cli(project, "audit", f"{MODEL}@2", "--json").output)
    data = next(link for link in report["links"] if link["name"] == "data")
    assert data["status"] == "WARN" and "not committed" in data["evidence"], data
    assert report["ok"]  # a warning, not a broken link: the bytes still hash to the recorded md5


def test_reverse_lineage_by_md5_and_by_revision(project):
    by_md5 = json.loads(cli(project, "lineage", "--data", md5_of(project, "2"), "--json").output)
    assert [(r["model"], r["version"]) for r in by_md5["versions"]] == [(MODEL, "2")]
    assert "champion" in by_md5["versions"][0]["aliases"]
    by_rev = json.loads(cli(project, "lineage", "--data", "HEAD~1", "--json").output)
    assert by_rev["dataset_md5"] == md5_of(project, "1") and [r["version"] for r in by_rev["versions"]] == ["1"]
    text = cli(project, "lineage", "--data", "HEAD").output
    assert f"{MODEL} version 2 (champion" in text
    assert cli(project, "lineage", "--data", "no-such-rev").exit_code != 0
    assert cli(project, "lineage").exit_code != 0  # neither MODEL nor --data


def test_withdraw_moves_the_champion_back_and_quarantines_the_export(project):
    mlc = registry.client(project)
    export = state_dir(project) / "exports" / MODEL / "v2"
    assert export.is_dir()
    done = cli(project, "withdraw", "--data", "HEAD", "--reason", "labels of the subset were wrong")
    assert done.exit_code == 0, done.output
    assert "champion is now version 1" in done.output
    aliases = {k: str(v) for k, v in mlc.get_registered_model(MODEL).aliases.items()}
    assert aliases.get("champion") == "1" and "2" not in aliases.values()
    mv = mlc.get_model_version(MODEL, "2")
    assert "labels of the subset were wrong" in mv.tags[TAG_WITHDRAWN]
    assert not export.exists() and mv.tags[TAG_EXPORT_DIR].endswith("quarantined/v2")
    last = ledger.load_chain(mlc, MODEL).last
    assert (last.action, last.version, last.aliases_after.get("champion")) == (ledger.WITHDRAW, "2", "1")
    assert cli(project, "history", MODEL, "--verify").exit_code == 0
    refused = cli(project, "promote", MODEL, "2", "--force", "--reason", "again")
    assert refused.exit_code != 0 and "withdrawn" in str(refused.exception or refused.output)
    assert json.loads(cli(project, "audit", MODEL, "--json").output)["ok"]  # the champion now: version 1
    again = cli(project, "withdraw", "--data", "HEAD", "--reason", "labels of the subset were wrong")
    assert again.exit_code == 0 and ledger.load_chain(mlc, MODEL).last.seq == last.seq  # nothing left to move
    assert mlc.get_model_version(MODEL, "2").tags[TAG_EXPORT_DIR].endswith(f"{MODEL}/quarantined/v2")  # not moved again


def test_withdrawn_data_is_not_trained_on_again(project):
    from flows.retrain import retrain

    with pytest.raises(RegistryError, match="was withdrawn"):
        retrain(config=load_config("smoke"), project_dir=str(project))  # data.dvc still names the withdrawn subset
    assert sorted(str(v.version) for v in registry.client(project).search_model_versions(f"name='{MODEL}'")) == ["1", "2"]


def chromium(page, tmp_path):
    """Open `page` in headless Chromium: (the DOM after load, the console's messages, a screenshot)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium (apt-get install chromium)")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / f"{page.stem}.png"
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    return dom.stdout, console, shot


def test_the_browser_check_catches_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="data:image/png;base64,AAAA"><script>missing();</script></body></html>')
    dom, console, _ = chromium(bad, tmp_path)
    assert console and "missing" in console[0]


def test_the_report_renders_its_plot_and_samples_without_console_errors(project, tmp_path):
    page = tmp_path / "report.html"
    done = cli(project, "report", MODEL, "--out", str(page))
    assert done.exit_code == 0, done.output
    text = page.read_text()
    assert "audit: every link verified" in text and "withdraw" in text and "labels of the subset were wrong" in text
    dom, console, shot = chromium(page, tmp_path)
    assert console == []
    images = re.search(r'<body data-images="(\d+)" data-broken="(\d+)"', dom)
    assert images and int(images.group(1)) == text.count("<img ") >= 3 and images.group(2) == "0", dom[:300]
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"report screenshot: {shot}")
