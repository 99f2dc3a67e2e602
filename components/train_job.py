"""The training step as a job: load data, train, write the generator and pictures to a folder.

The same entry runs in-process (the flow's default), as its own process (`ganops train`), or under torchrun
for DistributedDataParallel; the flow reads the job's `result.json` either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from components.atomic import replace_file
from components.config import RetrainConfig
from components.errors import GanopsError

RESULT = "result.json"


def train_to_files(data_root: Path, config: RetrainConfig, out_dir: Path, on_metrics=None, progress=None, resume: bool = False) -> dict:
    """Train on the ImageFolder at data_root; write generator.safetensors, samples/, loss_curves.png, result.json.

    Checkpoints go to out_dir/checkpoints; resume=True continues from the newest valid one. Returns the result.
    """
    from components.data import load_images
    from components.images import save_grid, save_loss_plot
    from components.training import dist_info, train_gan
    from components.weights import save_generator

    out_dir = Path(out_dir)
    labels = config.validation.labels
    config_dict = config.model_dump(mode="json")
    rank, world, _ = dist_info()
    images, targets = load_images(Path(data_root), labels)

    def on_samples(step, samples):
        save_grid(samples, out_dir / "samples" / f"step_{step:06d}.png")

    result = train_gan(images, targets, config.train, config.seed, config_dict, on_metrics=on_metrics,
                       on_samples=on_samples, progress=progress, checkpoint_dir=out_dir / "checkpoints", resume=resume,
                       num_classes=len(labels))
    if rank != 0:
        return {}
    weights = save_generator(out_dir / "generator.safetensors", result.generator, result.spec, config_dict)
    plot = save_loss_plot(result.history, out_dir / "loss_curves.png")
    summary = {
        "weights": str(weights), "grids": sorted(str(p) for p in (out_dir / "samples").glob("*.png")), "loss_plot": str(plot),
        "steps": result.steps, "resumed_from": result.resumed_from, "seconds": result.seconds, "device": result.device,
        "world_size": world, "history": result.history, "spec": result.spec,
        "final": {k: v[-1] for k, v in result.history.items() if k != "step" and v}, "images": int(len(images)),
    }
    text = json.dumps(summary, indent=2)
    replace_file(lambda tmp: tmp.write_text(text), out_dir / RESULT)
    return summary


def progress_bar(total: int):
    """A tqdm bar with ETA for a terminal; silent when stderr is not one (logs, CI)."""
    from tqdm import tqdm

    return tqdm(total=total, desc="train", unit="step", disable=not sys.stderr.isatty(), dynamic_ncols=True)


def launch_command(config_file: Path, data_root: Path, out_dir: Path, launcher: str, nproc: int) -> list[str]:
    """The command that runs `ganops train` as its own process, or under torchrun with `nproc` processes."""
    args = ["-m", "flows.cli", "train", "--config", str(config_file), "--data", str(data_root), "--out", str(out_dir), "--resume"]
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return [sys.executable, *args]


def train_in_subprocess(data_root: Path, config: RetrainConfig, out_dir: Path) -> dict:
    """Run the job in a child process (plain or torchrun) and return its result.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    cmd = launch_command(config_file, data_root, out_dir, config.train.launcher, config.train.nproc)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise GanopsError(f"training process failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")
    return json.loads((out_dir / RESULT).read_text())
