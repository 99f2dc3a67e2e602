"""The files of an export folder, each spelled once, and the serving runtimes: one record per runtime with its file,
the writer that exports it, the loader `ganops serve` runs it with, the code that checks it in a process without
ganops (serving.infra), and the tolerance against PyTorch's golden images. Export, serving and the infra check all
read RUNTIMES; adding a runtime is one record here and its name in core/names.py (the gate rule's metric suffix).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from components.core.names import ONNX_RUNTIME, TORCHSCRIPT_RUNTIME

MANIFEST = "manifest.json"  # written last: the export's commit point
TORCHSCRIPT, ONNX, WEIGHTS, CONFIG = "generator.torchscript.pt", "generator.onnx", "generator.safetensors", "config.json"
GOLDEN = "golden.safetensors"  # fixed latents (and labels) with PyTorch's images: any runtime checks itself
MODEL_CARD, SAMPLES = "MODEL_CARD.md", "samples.png"  # the card shows the golden latents' images
GOLDEN_TOLERANCE = 1e-4  # max abs difference in fp32 between a runtime's images and PyTorch's
ONNX_OPSET = 18

# (latents (N, z_dim) float32, labels (N,) int64 or None) -> images (N, C, H, W) float32 in [-1, 1]
Forward = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class ServingRuntime:
    """One way to run an exported generator. `check` is Python source defining `load(path)` -> (run, version) for
    the isolated checking process: the standard library, numpy and the runtime's own package only."""

    name: str  # `ganops serve --runtime`, and the suffix of its infra_* metrics
    file: str  # its file in the export folder
    write: Callable[[torch.nn.Module, tuple, Path], None]  # (generator, example inputs, path)
    load: Callable[[bytes], Forward]  # from the verified bytes, nothing unpickled
    check: str
    tolerance: float = GOLDEN_TOLERANCE


def write_torchscript(generator: torch.nn.Module, example: tuple, path: Path) -> None:
    """The generator traced to TorchScript (loads without Python code, in C++ too)."""
    with warnings.catch_warnings():
        # torch 2.13 marks TorchScript deprecated; it is still the format serving stacks load without Python code.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.trace(generator, example).save(str(path))


def write_onnx(generator: torch.nn.Module, example: tuple, path: Path) -> None:
    """The generator as an ONNX graph with a dynamic batch axis: inputs `z` (and `labels`), output `images`.
    TorchScript-based exporter (dynamo=False): on torch 2.13 it takes 0.1-0.7 s where the dynamo exporter takes
    2-9 s for the same graph, and both reproduce PyTorch within 2e-8 (measured on the dcgan, cdcgan and mlp presets)."""
    names = ["z", "labels"][: len(example)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices; the result is checked by onnxruntime
        torch.onnx.export(
            generator,
            example,
            str(path),
            input_names=names,
            output_names=["images"],
            dynamo=False,
            opset_version=ONNX_OPSET,
            dynamic_axes={n: {0: "batch"} for n in [*names, "images"]},
        )


def load_torchscript(blob: bytes) -> Forward:
    module = torch.jit.load(io.BytesIO(blob), map_location="cpu").eval()

    def forward(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(z), *(() if labels is None else (torch.from_numpy(labels),))).numpy()

    return forward


def load_onnx(blob: bytes) -> Forward:
    import onnxruntime as ort  # only where ONNX is served: keeps it off every other command's start

    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])

    def forward(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        return session.run(None, {"z": z, **({} if labels is None else {"labels": labels})})[0]

    return forward


CHECK_TORCHSCRIPT = r"""
def load(path):
    import torch
    torch.set_num_threads(1)
    model = torch.jit.load(str(path), map_location="cpu").eval()

    def run(z, labels):
        with torch.no_grad():
            return model(torch.from_numpy(z), *((torch.from_numpy(labels),) if labels is not None else ())).numpy()
    return run, torch.__version__
"""

CHECK_ONNX = r"""
def load(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(z, labels):
        return session.run(None, {"z": z, **({"labels": labels} if labels is not None else {})})[0]
    return run, "onnxruntime " + ort.__version__
"""

RUNTIMES: dict[str, ServingRuntime] = {
    r.name: r
    for r in (
        ServingRuntime(TORCHSCRIPT_RUNTIME, TORCHSCRIPT, write_torchscript, load_torchscript, CHECK_TORCHSCRIPT),
        ServingRuntime(ONNX_RUNTIME, ONNX, write_onnx, load_onnx, CHECK_ONNX),
    )
}
