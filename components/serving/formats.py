"""The files of an export folder, each spelled once, and which file each serving runtime loads."""

from __future__ import annotations

from components.core.names import ONNX_RUNTIME, TORCHSCRIPT_RUNTIME

MANIFEST = "manifest.json"  # written last: the export's commit point
TORCHSCRIPT, ONNX, WEIGHTS, CONFIG = "generator.torchscript.pt", "generator.onnx", "generator.safetensors", "config.json"
GOLDEN = "golden.safetensors"  # fixed latents (and labels) with PyTorch's images: any runtime checks itself
MODEL_CARD, SAMPLES = "MODEL_CARD.md", "samples.png"  # the card shows the golden latents' images
RUNTIME_FILES = {TORCHSCRIPT_RUNTIME: TORCHSCRIPT, ONNX_RUNTIME: ONNX}
