import json

import pytest
import torch

from components.config import TrainConfig
from components.serving.export import MANIFEST, TORCHSCRIPT, WEIGHTS, export_generator, verify_export
from components.serving.infra import GOLDEN, infra_validate
from components.training.networks import build_generator
from components.training.engine import model_spec
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
    assert not checked["ok"] and checked["files"][WEIGHTS] == "mismatch"


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


@pytest.mark.parametrize("arch", ["dcgan", "cdcgan"])
def test_an_export_proves_itself_in_a_fresh_process(tmp_path, arch):
    """Golden samples in the manifest; torch alone, in an isolated process, reproduces them; a TorchScript file
    that does not load fails the check with the file named, instead of passing or crashing the caller."""
    spec = model_spec(TrainConfig(arch=arch, z_dim=8, base_channels=16), 1, 8, 10)
    weights = save_generator(tmp_path / "g.safetensors", build_generator(spec).eval(), spec, {})
    folder = export_generator(weights, tmp_path / "exports", "m", "1", {})
    assert GOLDEN in json.loads((folder / MANIFEST).read_text())["files"]
    report = infra_validate(folder, TORCHSCRIPT)
    assert not report.error and report.max_abs_diff <= 1e-5 and report.ms_batch1 > 0 and report.ms_batch64 > 0
    (folder / TORCHSCRIPT).write_bytes(b"not a model")
    broken = infra_validate(folder, TORCHSCRIPT)
    assert broken.max_abs_diff == float("inf") and str(folder / TORCHSCRIPT) in broken.error
