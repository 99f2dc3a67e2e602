"""Infra validation: an export proves itself in a process that has nothing of ganops.

Every export carries golden samples (`golden.safetensors`: fixed latents, labels for a conditional generator, and
the images PyTorch made from them). `infra_validate` starts a fresh, isolated Python (`-I`: no PYTHONPATH, no
current folder, so neither ganops' training code nor the project can be imported), which loads the TorchScript
file with torch alone, runs the golden latents, compares with the stored images and times batch 1 and batch 64.
The numbers become run metrics and the gate rule `infra_valid` judges them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from components.core.names import INFRA_MAX_ABS_DIFF, INFRA_MS_BATCH1, INFRA_MS_BATCH64, TORCHSCRIPT_RUNTIME, metric_name

GOLDEN = "golden.safetensors"
GOLDEN_COUNT, GOLDEN_SEED = 16, 20240229
GOLDEN_TOLERANCE = 1e-4  # max abs difference in fp32 between a runtime's images and PyTorch's
CHECK_TIMEOUT_S = 300

# Runs in the isolated process: torch and the standard library only.
CHECK = r"""
import json, statistics, sys, time
from pathlib import Path
import torch
from safetensors.torch import load_file

folder = Path(sys.argv[1])
model = torch.jit.load(str(folder / sys.argv[2]), map_location="cpu").eval()
golden = load_file(str(folder / sys.argv[3]))
args = (golden["z"],) + ((golden["labels"],) if "labels" in golden else ())
with torch.no_grad():
    out = model(*args)
    diff = float((out - golden["images"]).abs().max()) if out.shape == golden["images"].shape else float("inf")

    def ms(batch):
        z = torch.randn(batch, golden["z"].shape[1], generator=torch.Generator().manual_seed(0))
        extra = (torch.arange(batch) % int(golden["num_classes"].item()),) if "labels" in golden else ()
        for _ in range(3):
            model(z, *extra)
        times = []
        for _ in range(15):
            start = time.perf_counter()
            model(z, *extra)
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    timing = {"ms_batch1": ms(1), "ms_batch64": ms(64)}
print(json.dumps({"max_abs_diff": diff, **timing, "torch": torch.__version__,
                  "ganops_imported": any(m == "components" or m.startswith("components.") for m in sys.modules)}))
"""


def write_golden(generator: torch.nn.Module, path: Path) -> Path:
    """Fixed latents (and labels, every class in turn), and the images this PyTorch generator makes from them."""
    z = torch.randn(GOLDEN_COUNT, generator.z_dim, generator=torch.Generator().manual_seed(GOLDEN_SEED))
    classes = getattr(generator, "num_classes", 0)
    tensors = {"z": z}
    if classes:
        tensors.update(labels=torch.arange(GOLDEN_COUNT) % classes, num_classes=torch.tensor(classes))
    with torch.no_grad():
        tensors["images"] = generator(z, tensors.get("labels")).float().contiguous()
    save_file(tensors, str(path))
    return path


@dataclass(frozen=True)
class InfraReport:
    """What the fresh process measured; `error` when it could not load or run the export (then the difference is
    infinite, and `infra_valid` fails)."""

    max_abs_diff: float
    ms_batch1: float
    ms_batch64: float
    torch_version: str = ""
    error: str = ""

    def metrics(self) -> dict[str, float]:
        return {metric_name(INFRA_MAX_ABS_DIFF, TORCHSCRIPT_RUNTIME): self.max_abs_diff,
                metric_name(INFRA_MS_BATCH1, TORCHSCRIPT_RUNTIME): self.ms_batch1,
                metric_name(INFRA_MS_BATCH64, TORCHSCRIPT_RUNTIME): self.ms_batch64}


def infra_validate(folder: Path, torchscript: str, golden: str = GOLDEN) -> InfraReport:
    """Check the export in `folder` in a fresh isolated process."""
    try:
        done = subprocess.run([sys.executable, "-I", "-c", CHECK, str(folder), torchscript, golden], cwd=folder,
                              capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return InfraReport(math.inf, math.nan, math.nan, error=f"no answer from the export in {CHECK_TIMEOUT_S} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return InfraReport(math.inf, math.nan, math.nan, error=f"{folder / torchscript} does not run on its own: {last}")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return InfraReport(math.inf, math.nan, math.nan, error=f"checking {folder} printed no result: {done.stdout[-200:]!r}")
    if result["ganops_imported"]:  # a guard: -I keeps the project off sys.path
        return InfraReport(math.inf, math.nan, math.nan, error=f"checking {folder} imported ganops code")
    return InfraReport(result["max_abs_diff"], result["ms_batch1"], result["ms_batch64"], result["torch"])
