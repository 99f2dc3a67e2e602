"""Infra validation: an export proves itself in a process that has nothing of ganops.

Every export carries golden samples (`golden.safetensors`: fixed latents, labels for a conditional generator, and
the images PyTorch made from them). `infra_validate` starts a fresh, isolated Python (`-I`: no PYTHONPATH, no
current folder, so neither ganops' training code nor the project can be imported), which loads each runtime's file
(the TorchScript with torch alone, the ONNX model with onnxruntime and numpy alone), runs the golden latents,
compares with the stored images and times batch 1 and batch 64. The numbers become run metrics, suffixed with
the runtime, and the gate rule `infra_valid` judges them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from safetensors.torch import save_file

from components.core.names import INFRA_MAX_ABS_DIFF, INFRA_MS_BATCH1, INFRA_MS_BATCH64, metric_name
from components.serving.formats import GOLDEN, RUNTIMES

GOLDEN_COUNT, GOLDEN_SEED = 16, 20240229
CHECK_TIMEOUT_S = 300

# Runs in the isolated process: the standard library, numpy, safetensors and the runtime under test only. Each
# runtime is checked on its own, so one that fails to load still leaves the other's numbers.
CHECK = r"""
import json, statistics, sys, time
from pathlib import Path
import numpy as np
from safetensors.numpy import load_file

folder, golden_file, wanted = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])  # {runtime: [file, check source]}
golden = load_file(str(folder / golden_file))
conditional = "labels" in golden


def ms(run, batch):
    z = np.random.default_rng(0).standard_normal((batch, golden["z"].shape[1]), dtype=np.float32)
    labels = np.arange(batch, dtype=np.int64) % int(golden["num_classes"]) if conditional else None
    for _ in range(3):
        run(z, labels)
    times = []
    for _ in range(15):
        start = time.perf_counter()
        run(z, labels)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


report = {}
for runtime, (name, check) in wanted.items():
    try:
        namespace = {}
        exec(check, namespace)  # the runtime's own check code, from ganops' registry (serving.formats)
        run, version = namespace["load"](folder / name)
        out = run(golden["z"], golden.get("labels"))
        diff = float(np.abs(out - golden["images"]).max()) if out.shape == golden["images"].shape else float("inf")
        report[runtime] = {"max_abs_diff": diff, "ms_batch1": ms(run, 1), "ms_batch64": ms(run, 64), "version": version}
    except Exception as e:
        report[runtime] = {"error": f"{folder / name} does not run on its own: {type(e).__name__}: {str(e)[:300]}"}
report["ganops_imported"] = any(m == "components" or m.startswith("components.") for m in sys.modules)
print(json.dumps(report))
"""


def write_golden(generator: torch.nn.Module, path: Path) -> Path:
    """Fixed latents (and labels, every class in turn), and the images this PyTorch generator makes from them."""
    z_dim = cast(int, generator.z_dim)  # every registered generator sets z_dim
    z = torch.randn(GOLDEN_COUNT, z_dim, generator=torch.Generator().manual_seed(GOLDEN_SEED))
    classes = getattr(generator, "num_classes", 0)
    tensors = {"z": z}
    if classes:
        tensors.update(labels=torch.arange(GOLDEN_COUNT) % classes, num_classes=torch.tensor(classes))
    with torch.no_grad():
        tensors["images"] = generator(z, tensors.get("labels")).float().contiguous()
    save_file(tensors, str(path))
    return path


@dataclass(frozen=True)
class RuntimeReport:
    """What the fresh process measured for one runtime; `error` when it could not load or run the export (then the
    difference is infinite, and `infra_valid` fails)."""

    runtime: str
    max_abs_diff: float
    ms_batch1: float
    ms_batch64: float
    version: str = ""
    error: str = ""

    def metrics(self) -> dict[str, float]:
        return {
            metric_name(INFRA_MAX_ABS_DIFF, self.runtime): self.max_abs_diff,
            metric_name(INFRA_MS_BATCH1, self.runtime): self.ms_batch1,
            metric_name(INFRA_MS_BATCH64, self.runtime): self.ms_batch64,
        }

    def summary(self) -> str:
        if self.error:
            return f"{self.runtime}: {self.error}"
        return (
            f"{self.runtime}: max |diff| from PyTorch {self.max_abs_diff:.2e}, batch 1 {self.ms_batch1:.2f} ms, "
            f"batch 64 {self.ms_batch64:.2f} ms ({self.version})"
        )


@dataclass(frozen=True)
class InfraReport:
    runtimes: tuple[RuntimeReport, ...]

    @property
    def error(self) -> str:
        return "; ".join(r.error for r in self.runtimes if r.error)

    def metrics(self) -> dict[str, float]:
        return {k: v for r in self.runtimes for k, v in r.metrics().items()}

    def __getitem__(self, runtime: str) -> RuntimeReport:
        return next(r for r in self.runtimes if r.runtime == runtime)


def _failed(runtimes, error: str) -> InfraReport:
    return InfraReport(tuple(RuntimeReport(r, math.inf, math.nan, math.nan, error=error) for r in runtimes))


def infra_validate(folder: Path, runtimes: tuple[str, ...] = tuple(RUNTIMES), golden: str = GOLDEN) -> InfraReport:
    """Check each runtime's file of the export in `folder` in one fresh isolated process."""
    wanted = json.dumps({r: [RUNTIMES[r].file, RUNTIMES[r].check] for r in runtimes})
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", CHECK, str(folder), golden, wanted],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return _failed(runtimes, f"no answer from the export in {folder} in {CHECK_TIMEOUT_S} s")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return _failed(runtimes, f"checking {folder} gave no result: {last}")
    if result.pop("ganops_imported"):  # a guard: -I keeps the project off sys.path
        return _failed(runtimes, f"checking {folder} imported ganops code")
    return InfraReport(
        tuple(
            RuntimeReport(r, math.inf, math.nan, math.nan, error=result[r]["error"])
            if "error" in result[r]
            else RuntimeReport(r, **result[r])
            for r in runtimes
        )
    )
