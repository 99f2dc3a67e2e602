import json
import os

import pytest
import torch

from components.config import TrainConfig
from components.core.names import SERVING_RUNTIMES
from components.serving.export import export_generator, verify_export
from components.serving.formats import GOLDEN, MANIFEST, ONNX, RUNTIMES, TORCHSCRIPT, WEIGHTS
from components.serving.infra import infra_validate
from components.training.networks import build_generator
from components.training.state import model_spec
from components.training.weights import load_generator, save_generator


@pytest.mark.parametrize("arch", ["dcgan", "cdcgan", "mlp"])
def test_export_round_trip_and_tamper_detection(tmp_path, arch):
    spec = model_spec(TrainConfig(arch=arch, z_dim=8, base_channels=16), 1, 8, 10)
    g = build_generator(spec).eval()
    weights = save_generator(tmp_path / "g.safetensors", g, spec, {"name": "unit"})
    folder = export_generator(weights, tmp_path / "exports", "m", "3", {"ganops.dataset_md5": "abc"})
    assert folder == tmp_path / "exports" / "m" / "v3"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["model_version"] == "3" and manifest["lineage"]["ganops.dataset_md5"] == "abc"
    assert verify_export(folder)["ok"]

    # The TorchScript and the safetensors weights produce the same images.
    z = torch.randn(5, 8)
    inputs = (z, torch.arange(5)) if arch == "cdcgan" else (z,)
    scripted = torch.jit.load(str(folder / TORCHSCRIPT))
    reloaded, _, config = load_generator(folder / WEIGHTS)
    assert torch.allclose(scripted(*inputs), reloaded(*inputs), atol=1e-6) and torch.allclose(g(*inputs), reloaded(*inputs), atol=1e-6)
    assert config == {"name": "unit"}

    (folder / WEIGHTS).write_bytes(b"tampered")
    checked = verify_export(folder)
    assert not checked["ok"] and checked["files"][WEIGHTS] == "changed"


def test_a_non_finite_weight_is_refused_naming_the_file_and_tensor(tmp_path):
    from components.core.errors import GanopsError

    spec = model_spec(TrainConfig(arch="dcgan", z_dim=8, base_channels=16), 1, 8, 10)
    g = build_generator(spec).eval()
    name, tensor = next((k, v) for k, v in g.state_dict().items() if v.is_floating_point())
    with torch.no_grad():
        tensor.view(-1)[0] = float("nan")
    weights = save_generator(tmp_path / "g.safetensors", g, spec, {})
    with pytest.raises(GanopsError, match=rf"g.safetensors: tensor {name} holds NaN or infinite values"):
        load_generator(weights)


def test_a_killed_export_leaves_no_partial_folder_after_the_next(tmp_path):
    """The temporary folders of a builder that died (its pid is gone) are swept by the next export of that folder;
    a live builder's are left alone."""
    import os

    spec = model_spec(TrainConfig(arch="dcgan", z_dim=8, base_channels=16), 1, 8, 10)
    weights = save_generator(tmp_path / "g.safetensors", build_generator(spec).eval(), spec, {})
    root = tmp_path / "exports" / "m"
    dead, moved_aside, live = root / ".v3.new-999999999-abc", root / ".v3.old-999999999-abc", root / f".v3.new-{os.getpid()}-xyz"
    other = root / ".v1.new-999999999-def"  # another version's, never exported again
    for folder in (dead, moved_aside, live, other):
        folder.mkdir(parents=True)
    export_generator(weights, tmp_path / "exports", "m", "3", {})
    assert not dead.exists() and not moved_aside.exists() and not other.exists() and live.exists()
    assert verify_export(root / "v3")["ok"]


def test_a_folder_moved_aside_by_a_killed_swap_comes_back(tmp_path):
    """Killed between `target -> .old` and `.new -> target`: the old folder is whole, and it returns."""
    from components.core.atomic import sweep_leftovers

    root = tmp_path / "exports" / "m"
    (root / ".v2.old-999999999-abc").mkdir(parents=True)
    (root / ".v2.old-999999999-abc" / "manifest.json").write_text("{}")
    (root / ".v2.new-999999999-abc").mkdir()
    sweep_leftovers(root / "v9")
    assert (root / "v2" / "manifest.json").is_file() and not list(root.glob(".v2.*"))


@pytest.mark.parametrize("arch", ["dcgan", "cdcgan", "mlp"])
def test_an_export_proves_itself_in_a_fresh_process(tmp_path, arch):
    """Golden samples in the manifest; TorchScript (torch alone) and ONNX (onnxruntime alone), each in an isolated
    process, reproduce them; a file that does not load fails its runtime's check with the file named, instead of
    passing or crashing the caller, and the other runtime's numbers stay."""
    spec = model_spec(TrainConfig(arch=arch, z_dim=8, base_channels=16), 1, 8, 10)
    weights = save_generator(tmp_path / "g.safetensors", build_generator(spec).eval(), spec, {})
    folder = export_generator(weights, tmp_path / "exports", "m", "1", {})
    assert {GOLDEN, *(r.file for r in RUNTIMES.values())} <= set(json.loads((folder / MANIFEST).read_text())["files"])
    report = infra_validate(folder)
    assert not report.error, report.error
    assert {r.runtime for r in report.runtimes} == set(RUNTIMES)
    for runtime in RUNTIMES:
        assert report[runtime].max_abs_diff <= 1e-5 and report[runtime].ms_batch1 > 0 and report[runtime].ms_batch64 > 0
    assert report["onnx"].version.startswith("onnxruntime ")
    (folder / ONNX).write_bytes(b"not a model")
    broken = infra_validate(folder)
    assert broken["onnx"].max_abs_diff == float("inf") and str(folder / ONNX) in broken["onnx"].error
    assert broken["torchscript"].max_abs_diff <= 1e-5  # checked on its own


def test_the_model_card_gives_lineage_metrics_with_intervals_the_decision_and_samples(tmp_path):
    from PIL import Image

    from components.serving.formats import MODEL_CARD, SAMPLES

    spec = model_spec(TrainConfig(arch="cdcgan", z_dim=8, base_channels=16), 1, 8, 3)
    weights = save_generator(
        tmp_path / "g.safetensors", build_generator(spec).eval(), spec, {"validation": {"labels": ["cat", "dog", "owl"]}}
    )
    decision = {
        "verdict": "reject",
        "promote": False,
        "reasons": ["beats_champion: 5.1 is not below 4.0"],
        "rules": [{"name": "beats_champion", "passed": False, "value": 5.1, "threshold": 4.0, "message": "5.1 is not below 4.0"}],
    }
    folder = export_generator(
        weights,
        tmp_path / "exports",
        "m",
        "7",
        {"ganops.dataset_md5": "f00d"},
        {"fid_domain": 5.1, "fid_ci_low_domain": 4.8, "fid_ci_high_domain": 5.5, "champion.fid_domain": 4.0},
        decision,
    )
    card = (folder / MODEL_CARD).read_text()
    assert "# m version 7" in card and "3 classes: cat, dog, owl" in card and "| dataset md5 (DVC) | f00d |" in card
    assert "| fid_domain | 5.1 | 4.8 - 5.5 |" in card and "champion.fid_domain" not in card
    assert "Verdict: **reject**: beats_champion" in card and "| beats_champion | no | 5.1 | 4 |" in card
    assert "## Limitations" in card and f"]({SAMPLES})" in card
    assert Image.open(folder / SAMPLES).size[0] > 8
    manifest = json.loads((folder / MANIFEST).read_text())
    assert {MODEL_CARD, SAMPLES} <= set(manifest["files"]) and manifest["labels"] == ["cat", "dog", "owl"]
    assert verify_export(folder)["ok"]


def test_every_runtime_the_gate_checks_has_one_record_that_export_serving_and_the_check_read():
    """The gate rule infra_valid reads the runtimes' names from core.names (it sits below serving); each has exactly
    one record in serving.formats, with its own file."""
    assert tuple(RUNTIMES) == SERVING_RUNTIMES
    assert all(name == r.name for name, r in RUNTIMES.items())
    assert len({r.file for r in RUNTIMES.values()}) == len(RUNTIMES) and {TORCHSCRIPT, ONNX} == {r.file for r in RUNTIMES.values()}


def test_an_export_is_readable_by_other_users(tmp_path):
    """The serving image runs as its own uid and mounts the export read-only: folders 0755 and files 0644 under the
    usual umask (mkdtemp alone makes 0700, safetensors 0600)."""
    old = os.umask(0o022)
    try:
        spec = model_spec(TrainConfig(arch="cdcgan", z_dim=8, base_channels=16), 1, 8, 10)
        weights = save_generator(tmp_path / "g.safetensors", build_generator(spec).eval(), spec, {})
        folder = export_generator(weights, tmp_path / "exports", "m", "1", {})
    finally:
        os.umask(old)
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o644} and folder.stat().st_mode & 0o777 == 0o755
    assert (folder.parent.stat().st_mode & 0o777) == 0o755
