"""Bad input through the real `ganops` process: one line on stderr naming the offender, exit 2, nothing written;
and shared state that survives several processes at once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.data.importers import write_digits

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def ganops(*args, env=None, cwd=REPO):
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, capture_output=True, text=True, env=full_env)


def one_line_error(done) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits") / "data"
    write_digits(root)
    return root


def test_train_validates_first_and_names_the_corrupt_file(tmp_path, digits):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(digits, data)
    (data / "3" / "0003.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    line = one_line_error(
        ganops("train", "-c", "smoke", "--data", str(data), "--out", str(out), env={"GANOPS_HOME": str(tmp_path / "state")})
    )
    assert "3/0003.png" in line and "every file decodes" in line
    assert not out.exists()


def test_a_state_folder_that_does_not_exist_yet_is_created(tmp_path, digits):
    home = tmp_path / "new" / "deeper"
    done = ganops("validate", "-c", "smoke", "--data", str(digits), env={"GANOPS_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (home / "gx").is_dir()


def test_a_revision_that_looks_like_an_option_never_reaches_git(tmp_path):
    line = one_line_error(
        ganops(
            "run",
            "-c",
            "smoke",
            "--data-rev=--output=FILE",
            "-C",
            str(tmp_path),
            env={"GANOPS_HOME": str(tmp_path / "state")},
            cwd=tmp_path,
        )
    )
    assert "'--output=FILE' is not a git revision" in line
    assert not (tmp_path / "FILE").exists()


def test_several_overrides_after_one_set(tmp_path, digits):
    done = ganops(
        "train",
        "-c",
        "smoke",
        "--data",
        str(digits),
        "--out",
        str(tmp_path / "out"),
        "--no-validate",
        "--set",
        "train.steps=2",
        "train.batch_size=16",
        env={"GANOPS_HOME": str(tmp_path / "state")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["steps"] == 2
    assert result["history"]["step"] == [2]


def test_concurrent_validations_share_the_gx_store(tmp_path, digits):
    # Several `ganops validate` at once on one state folder: each passes, and the GX store stays readable.
    env = {**os.environ, "GANOPS_HOME": str(tmp_path / "state"), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "validate", "-c", "smoke", "--data", str(digits)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0] * 4, results
    for path in (tmp_path / "state" / "gx").rglob("*.json"):
        json.loads(path.read_text())  # raises on a torn or doubled file
    assert ganops("validate", "-c", "smoke", "--data", str(digits), env={"GANOPS_HOME": str(tmp_path / "state")}).returncode == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "-c", "smoke", "--set", "export.dir=/proc/ganops-x"], "export.dir /proc/ganops-x cannot be written"),
        (["run", "-c", "smoke", "--set", "name=" + "a" * 100_000], "name: name is 100000 characters long"),
        (["train", "-c", "smoke", "--out", "/proc/ganops-x", "--no-validate"], "--out /proc/ganops-x cannot be written"),
        (["run", "-c", "{tmp}"], "is a folder: pass a preset name"),
        (["validate", "-c", "{tmp}/binary.yaml"], "is not valid YAML text"),
        (["run", "-c", "{tmp}/binary"], "is not valid YAML text"),
        (["run", "-c", "{tmp}/empty.yaml"], "is empty: it must hold a mapping"),
    ],
)
def test_bad_configs_and_output_folders_fail_at_once_in_one_line(tmp_path, digits, args, words):
    """Before any data is read, a run is started or a model trained: no MLflow run, no export, no training folder."""
    import time

    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "binary").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "empty.yaml").write_text("")
    state = tmp_path / "state"
    started = time.monotonic()
    args = [a.format(tmp=tmp_path) for a in args]
    line = one_line_error(
        ganops(
            *args,
            "--data" if args[0] == "train" else "-C",
            str(digits if args[0] == "train" else tmp_path),
            env={"GANOPS_HOME": str(state)},
        )
    )
    assert words.format(tmp=tmp_path) in line, line
    assert time.monotonic() - started < 60  # not after validation, training and evaluation
    assert not (state / "mlflow.db").exists() and not (state / "exports").exists() and not (state / "train").exists()


def test_generate_into_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    from tests.unit.test_serving import make_export

    export = make_export(tmp_path)
    done = ganops(
        "generate", str(export), "-n", "1", "--out", "/proc/ganops-x", "-C", str(tmp_path), env={"GANOPS_HOME": str(tmp_path / "state")}
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: /proc/ganops-x cannot be written"), done.stderr


def test_a_dvc_project_without_a_remote_is_one_line_and_nothing_is_written(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    for args in (("data", "import", "digits"), ("data", "ensure")):
        line = one_line_error(ganops(*args, "-C", str(project)))
        assert f"{project / '.dvc' / 'config'} names no default DVC remote" in line and "dvc remote add -d" in line
    assert not (project / "data").exists() and not (project / "data.dvc").exists()
