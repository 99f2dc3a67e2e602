import json

import pytest
import torch

from components.config import TrainConfig
from components.serving.export import MANIFEST, TORCHSCRIPT, WEIGHTS, export_generator, verify_export
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
