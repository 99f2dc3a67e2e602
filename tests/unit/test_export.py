import json

import torch

from components.export import MANIFEST, TORCHSCRIPT, WEIGHTS, export_generator, verify_export
from components.networks import Generator
from components.weights import generator_spec, load_generator, save_generator


def test_export_round_trip_and_tamper_detection(tmp_path):
    g = Generator(8, 1, 8, 16, 1).eval()
    spec = generator_spec(g, 1, 8, 16, 1)
    weights = save_generator(tmp_path / "g.safetensors", g, spec, {"name": "unit"})
    folder = export_generator(weights, tmp_path / "exports", "m", "3", {"ganops.dataset_md5": "abc"})
    assert folder == tmp_path / "exports" / "m" / "v3"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["model_version"] == "3" and manifest["lineage"]["ganops.dataset_md5"] == "abc"
    assert verify_export(folder)["ok"]

    # The TorchScript and the safetensors weights produce the same images.
    z = torch.randn(5, 8)
    scripted = torch.jit.load(str(folder / TORCHSCRIPT))
    reloaded, _, config = load_generator(folder / WEIGHTS)
    assert torch.allclose(scripted(z), reloaded(z), atol=1e-6) and torch.allclose(g(z), reloaded(z), atol=1e-6)
    assert config == {"name": "unit"}

    (folder / WEIGHTS).write_bytes(b"tampered")
    checked = verify_export(folder)
    assert not checked["ok"] and checked["files"][WEIGHTS] == "mismatch"
