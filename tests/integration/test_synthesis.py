"""Synthetic data end to end on a real project (git, DVC with a local remote, MLflow on SQLite, the Prefect flow):
a small cdcgan is trained and promoted by the retrain flow, then `ganops generate` samples it (same seed, same
bytes; refusals), the quality check refuses an untrained generator, `ganops rebalance --import` writes a rebalanced
digits set that passes its validation and becomes a DVC version, a model trained on it traces back to the generator
through `ganops lineage` and `ganops audit`, and the rebalance flow runs the same steps as tasks."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from components.core.errors import GanopsError
from components.core.names import SYNTHETIC_MANIFEST, TAG_DATASET_MD5, TAG_WEIGHTS_SHA256
from components.data.versioning import read_dvc_file
from components.presets import load_config
from components.registry import tracking as registry
from components.serving.export import export_generator
from components.training.job import train_to_files
from flows.cli import app, expand_set_pairs
from tests.integration.conftest import digits_project, sh

pytestmark = pytest.mark.slow
runner = CliRunner()
MODEL = "ganops-cdcgan-test"
SMALL = [
    "train.steps=600",
    "train.ema_decay=0.0",  # an EMA of 0.999 lags far behind over 600 steps
    "evaluate.num_samples=256",
    "evaluate.extractor_epochs=2",
    "evaluate.bootstrap_rounds=0",
    f"registry.model_name={MODEL}",
    "gate.rules.relative_ceiling.factor=100000.0",
]
RELAXED = [
    "synthesis.min_class_accuracy=0.5",
    "synthesis.class_fid_factor=1000.0",
    "synthesis.quality_samples=100",
    "synthesis.min_confidence=0.05",  # the tiny test generator: most of its images pass, a few are filtered
    "synthesis.check_seeds=1",
]


def cli(project, *args):
    return runner.invoke(app, expand_set_pairs([*args, "-C", str(project)]))


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server):
    from flows.retrain import retrain

    root = tmp_path_factory.mktemp("synthesis")
    project = digits_project(root)
    summary = retrain(config=load_config("cdcgan", SMALL), project_dir=str(project))
    assert summary["decision"]["promote"], summary["decision"]
    imbalanced = root / "imbalanced"
    shutil.copytree(project / "data", imbalanced)
    for png in sorted((imbalanced / "3").glob("*.png"))[18:]:  # class 3 cut to 18 of 183 images
        png.unlink()
    return project


def refused(done, words: str) -> bool:
    """The command stopped on a GanopsError naming `words` (which `ganops` prints as one line, exit 2)."""
    return done.exit_code != 0 and isinstance(done.exception, GanopsError) and words in str(done.exception)


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generate_is_deterministic_by_seed_and_records_its_generator(project, tmp_path):
    args = ["generate", f"{MODEL}@champion", "-n", "6", "--class", "3", "--class", "7", "--seed", "5"]
    assert cli(project, *args, "--out", str(tmp_path / "a")).exit_code == 0
    assert cli(project, *args, "--out", str(tmp_path / "b")).exit_code == 0
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert a == b and sorted(k for k in a if k.endswith(".png"))[:2] == ["3/00000.png", "3/00001.png"] and len(a) == 13
    other = tmp_path / "c"
    assert cli(project, "generate", f"{MODEL}@1", "-n", "6", "--class", "3", "--seed", "6", "--out", str(other)).exit_code == 0
    assert files_of(other)["3/00000.png"] != a["3/00000.png"]
    manifest = json.loads(a[SYNTHETIC_MANIFEST])
    version = registry.client(project).get_model_version(MODEL, "1")
    assert manifest["generator"]["version"] == "1" and manifest["seed"] == 5 and manifest["counts"] == {"3": 6, "7": 6}
    assert manifest["generator"]["weights_sha256"] == version.tags[TAG_WEIGHTS_SHA256]
    assert manifest["generator"]["generator_dataset_md5"] == version.tags[TAG_DATASET_MD5]
    assert all(manifest["files"][k] == __import__("hashlib").sha256(v).hexdigest() for k, v in a.items() if k != SYNTHETIC_MANIFEST)
    npz = tmp_path / "npz"
    assert cli(project, "generate", f"{MODEL}@champion", "-n", "2", "--format", "npz", "--out", str(npz)).exit_code == 0
    import numpy as np

    with np.load(npz / "images.npz", allow_pickle=False) as z:
        assert z["x"].shape == (20, 8, 8, 1) and z["x"].dtype == np.uint8 and list(z["y"][:3]) == ["0", "0", "1"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["-n", "3", "--class", "ten"], "class 'ten' is not one"),
        (["-n", "0"], "-n 0 is out of bounds"),
        (["-n", "2000000"], "out of bounds"),
        (["-n", "3", "--format", "gif"], "--format 'gif'"),
    ],
)
def test_generate_refusals(project, tmp_path, args, words):
    done = cli(project, "generate", f"{MODEL}@champion", *args, "--out", str(tmp_path / "out"))
    assert refused(done, words), (done.output, done.exception)
    assert not (tmp_path / "out").exists()


def test_the_command_line_prints_one_line_and_exits_2(project, tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "generate",
            f"{MODEL}@champion",
            "-n",
            "3",
            "--class",
            "ten",
            "--out",
            str(tmp_path / "out"),
            "-C",
            str(project),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: class 'ten' is not one {MODEL} version 1 generates; it knows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
    ], done.stderr


def test_generate_refuses_a_non_empty_folder_and_an_unconditional_class(project, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = cli(project, "generate", f"{MODEL}@champion", "-n", "2", "--out", str(out))
    assert refused(done, "--force") and (out / "keep.txt").read_text() == "mine"
    done = cli(project, "generate", f"{MODEL}@champion", "-n", "2", "--out", str(out), "--force")
    assert refused(done, "not a folder ganops wrote") and (out / "keep.txt").read_text() == "mine"  # --force replaces only outputs
    again = tmp_path / "again"
    assert cli(project, "generate", f"{MODEL}@champion", "-n", "2", "--out", str(again)).exit_code == 0
    assert cli(project, "generate", f"{MODEL}@champion", "-n", "3", "--out", str(again), "--force").exit_code == 0
    assert json.loads((again / SYNTHETIC_MANIFEST).read_text())["counts"]["0"] == 3
    assert refused(
        cli(project, "rebalance", "--model", f"{MODEL}@champion", "--data", str(project / "data"), "--out", str(project / "data" / "more")),
        "overlap",
    )
    plain = train_to_files(project / "data", load_config("smoke", ["train.steps=2"]), tmp_path / "plain")
    export = export_generator(plain.weights, tmp_path / "exports", "plain", "1", {})
    done = cli(project, "generate", str(export), "-n", "2", "--class", "3", "--out", str(tmp_path / "p"))
    assert refused(done, "unconditional")
    assert cli(project, "generate", str(export), "-n", "4", "--out", str(tmp_path / "p")).exit_code == 0
    assert sorted(files_of(tmp_path / "p")) == [SYNTHETIC_MANIFEST, "00000.png", "00001.png", "00002.png", "00003.png"]
    done = cli(project, "rebalance", "--model", str(export), "--data", str(project / "data"), "--out", str(tmp_path / "r"))
    assert refused(done, "unconditional")


def test_the_quality_check_refuses_an_untrained_generator(project, tmp_path):
    untrained = train_to_files(project / "data", load_config("cdcgan", ["train.steps=1"]), tmp_path / "untrained")
    export = export_generator(untrained.weights, tmp_path / "exports", "untrained", "1", {})
    out = tmp_path / "rebalanced"
    done = cli(project, "rebalance", "--model", str(export), "--data", str(project.parent / "imbalanced"), "--out", str(out))
    assert refused(done, "fails the quality check for class"), (done.output, done.exception)
    assert "nothing was generated" in str(done.exception) and not out.exists()


def test_rebalance_import_validates_and_traces_back_to_the_generator(project, tmp_path):
    from flows.retrain import retrain

    out = tmp_path / "rebalanced"
    before = read_dvc_file(project / "data.dvc")["md5"]
    done = cli(
        project,
        "rebalance",
        "--model",
        f"{MODEL}@champion",
        "--data",
        str(project.parent / "imbalanced"),
        "--out",
        str(out),
        "--max-synthetic-fraction",
        "0.9",
        "--import",
        "--set",
        *RELAXED,
    )
    assert done.exit_code == 0, done.output
    largest = max(len(list((out / c).glob("*.png"))) for c in "0123456789")
    assert largest == 182 and "validation passed" in done.output  # class 1, all real
    synthetic = sorted(p.relative_to(out).as_posix() for p in out.rglob("synthetic-v1-*.png"))
    assert len(list((out / "3").glob("synthetic-v1-*.png"))) == 162  # 18 real: 0.9 synthetic at most, short of 182
    assert not list((out / "1").glob("synthetic-*")) and all(len(list((out / c).glob("*.png"))) == 182 for c in "0245")
    record = json.loads((out / SYNTHETIC_MANIFEST).read_text())
    assert record["quality"]["passed"] and "3" in [c["label"] for c in record["quality"]["classes"]]
    assert sorted(record["files"]) == synthetic and record["method"] == "gan" and record["benefit"] is None
    kept = record["filtering"]["3"]
    assert kept["kept"] == 162 and kept["drawn"] == kept["kept"] + kept["rejected"] and len(kept["kept_indices"]) == 162
    assert "162 kept" in done.output
    md5 = read_dvc_file(project / "data.dvc")["md5"]
    assert md5 != before and (project / "data" / SYNTHETIC_MANIFEST).read_bytes() == (out / SYNTHETIC_MANIFEST).read_bytes()
    found = json.loads(cli(project, "lineage", "--data", md5, "--json").output)
    generator = registry.client(project).get_model_version(MODEL, "1")
    assert found["synthetic"]["generator"]["model"] == MODEL and found["synthetic"]["classes"]["3"] == 162
    assert found["synthetic"]["files"] == len(synthetic)
    assert found["synthetic"]["generator"]["generator_dataset_md5"] == generator.tags[TAG_DATASET_MD5] == before
    sh(project, "git", "add", "data.dvc")
    sh(project, "git", "commit", "-qm", "rebalanced digits")
    second = retrain(config=load_config("cdcgan", SMALL + ["train.steps=40"]), project_dir=str(project))
    text = cli(project, "lineage", f"{MODEL}@{second['version']}").output
    assert (
        "-> added images (" in text
        and "3: 162 (gan 162)" in text
        and ") by gan: --method gan" in text
        and f"-> {len(synthetic)} generated by {MODEL} version 1" in text
    )
    assert f"ganops lineage {MODEL}@1" in text
    report = json.loads(cli(project, "audit", f"{MODEL}@{second['version']}", "--json").output)
    link = next(x for x in report["links"] if x["name"] == "synthetic")
    assert link["status"] == "PASS" and f"{len(synthetic)} synthetic files match" in link["evidence"], link


def test_the_rebalance_flow_runs_the_same_steps(project, tmp_path):
    from flows.rebalance import rebalance

    out = tmp_path / "flow-out"
    result = rebalance(
        model=f"{MODEL}@1", data=str(project.parent / "imbalanced"), out=str(out), overrides=RELAXED, project_dir=str(project)
    )
    assert result["generator"]["version"] == "1" and result["synthetic"] == len(list(out.rglob("synthetic-v1-*.png")))
    assert len(list((out / "3").glob("synthetic-v1-*.png"))) == 54  # 18 real: at most 0.75 synthetic (the default)
    record = json.loads((out / SYNTHETIC_MANIFEST).read_text())  # the benefit check ran (on by default in the flow)
    assert result["method"] == "gan" and "the check:" in result["reason"] and record["benefit"]["seeds"] == [0]
    assert {row["method"] for row in record["benefit"]["rows"]} == {"none", "class_weights", "oversample", "smote", "gan", "mix"}


def test_rebalance_auto_writes_the_benefit_checks_winner_and_says_why(project, tmp_path):
    out = tmp_path / "auto"
    data = str(project.parent / "imbalanced")
    args = ["--data", data, "--out", str(out), "--class", "3", "--method", "auto"]
    done = cli(project, "rebalance", "--model", f"{MODEL}@1", *args, "--set", *RELAXED)
    assert done.exit_code == 0, done.output
    record = json.loads((out / SYNTHETIC_MANIFEST).read_text())
    chosen = record["method"]
    assert chosen in ("oversample", "smote", "gan", "mix") and f"method {chosen}: " in done.output and "balanced" in done.output
    assert record["benefit"]["minority"] == ["3"] and record["reason"]
    added = [p.name for p in (out / "3").iterdir() if not p.name[0].isdigit()]
    prefixes = {"oversample": "oversampled-", "smote": "synthetic-smote-", "gan": "synthetic-v1-"}
    assert added and all(name.startswith(tuple(prefixes.values())) for name in added)
    if chosen in prefixes:
        assert all(name.startswith(prefixes[chosen]) for name in added)


def test_oversampling_and_smote_need_no_generator_and_credit_none(project, tmp_path):
    from components.lineage.synthetic import check_synthetic, format_origin, summary

    data = str(project.parent / "imbalanced")
    out = tmp_path / "smote"
    done = cli(project, "rebalance", "--data", data, "--out", str(out), "--class", "3", "--method", "smote", "--set", *RELAXED)
    assert done.exit_code == 0, done.output
    record = json.loads((out / SYNTHETIC_MANIFEST).read_text())
    assert record["method"] == "smote" and record["generator"] == {} and record["files"]
    assert all(rel.startswith("3/synthetic-smote-") for rel in record["files"])
    members = {rel: (out / rel).read_bytes() for rel in record["files"]} | {SYNTHETIC_MANIFEST: b"{}"}
    status, evidence = check_synthetic(record, members, None)  # no generator exists: nothing to credit
    assert status == "PASS" and "no generator is credited" in evidence, evidence
    assert "generated by" not in format_origin(summary(record)) and "by smote" in format_origin(summary(record))
    refused_gan = cli(project, "rebalance", "--data", data, "--out", str(tmp_path / "gan"), "--method", "gan")
    assert refused(refused_gan, "--method gan draws generated images: give --model"), refused_gan.output
    assert not (tmp_path / "gan").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--method", "bogus"], "synthesis.method: Input should be 'gan', 'oversample', 'smote', 'mix' or 'auto'"),
        (["--min-confidence", "1.5"], "synthesis.min_confidence: Input should be less than 1"),
        (["--method", "oversample", "--require-benefit"], "--require-benefit asks whether generated images help"),
    ],
)
def test_rebalance_refuses_bad_methods_and_writes_nothing(project, tmp_path, args, words):
    out = tmp_path / "refused"
    done = cli(project, "rebalance", "--model", f"{MODEL}@1", "--data", str(project.parent / "imbalanced"), "--out", str(out), *args)
    assert refused(done, words), (done.output, done.exception)
    assert not out.exists()
