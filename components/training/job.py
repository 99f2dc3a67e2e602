"""The training step as a job: load data, train, write the generator and pictures to a folder.

The same entry runs in-process (the flow's default), as its own process (`ganops train`), or under torchrun
for DistributedDataParallel; the flow reads the job's `result.json` (a TrainOutcome) either way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, cast

import yaml

from components.config import RetrainConfig, TrainConfig, config_to_dict
from components.core.atomic import file_digest, file_lock, write_text
from components.core.device import dist_info
from components.core.errors import GanopsError
from components.core.paths import check_path_name, state_dir
from components.data.cache import cached_images
from components.data.images import load_images
from components.data.versioning import check_md5
from components.training.engine import train_gan
from components.training.networks import GeneratorSpec
from components.training.pictures import save_grid, save_loss_plot
from components.training.weights import save_generator
from components.validation.validate import require_valid

RESULT = "result.json"


@dataclass(frozen=True)
class TrainOutcome:
    """What a training job leaves behind (its result.json, whose file paths are relative to its folder, so the
    folder can move: a job on another work pool uploads it to MLflow and the flow downloads it)."""

    weights: Path
    grids: list[Path]
    loss_plot: Path
    steps: int
    resumed_from: int
    seconds: float
    device: str
    world_size: int
    spec: GeneratorSpec
    images: int
    history: dict[str, list[float]] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)  # the last logged value of each metric
    weights_sha256: str = ""
    reused: bool = False  # True when a finished result of the same training key was taken instead of training

    def to_dict(self, folder: Path) -> dict:
        out = asdict(self)
        rel = lambda p: str(Path(p).relative_to(folder))  # noqa: E731
        out.update(weights=rel(self.weights), grids=[rel(p) for p in self.grids], loss_plot=rel(self.loss_plot))
        del out["reused"]
        return out

    @classmethod
    def from_dict(cls, raw: dict, folder: Path) -> TrainOutcome:
        return cls(
            **{
                **raw,
                "weights": folder / raw["weights"],
                "grids": [folder / p for p in raw["grids"]],
                "loss_plot": folder / raw["loss_plot"],
                "spec": GeneratorSpec.from_dict(raw["spec"]),
            }
        )


def read_outcome(folder: Path) -> TrainOutcome:
    """The result.json of a finished job in `folder`. Raises GanopsError naming the file when it is missing or bad."""
    path = Path(folder) / RESULT
    try:
        return TrainOutcome.from_dict(json.loads(path.read_text()), Path(folder))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GanopsError(f"{path}: not a finished training result ({type(e).__name__}: {e})") from None


def finished_outcome(folder: Path) -> TrainOutcome | None:
    """The finished result in `folder` when its weights are intact (sha256 as recorded), else None."""
    try:
        outcome = read_outcome(folder)
    except GanopsError:
        return None
    if not outcome.weights_sha256 or not outcome.weights.is_file() or file_digest(outcome.weights) != outcome.weights_sha256:
        return None
    return replace(outcome, reused=True)


def _training_images(data_root: Path, labels: list[str], cache_dir: Path | None, dataset_md5: str | None, progress=None):
    """(uint8 images, label indices): decoded into memory, or from the memory-mapped cache in `cache_dir`."""
    if cache_dir is None:
        return load_images(data_root, labels)
    # every rank opens the same cache: the first to take the lock builds it, the others find it whole
    with file_lock(Path(cache_dir) / ".build.lock"):
        return cached_images(
            data_root,
            labels,
            Path(cache_dir),
            dataset_md5=dataset_md5,
            progress=(lambda n: progress(n, label="decode", unit="image")) if progress else None,
        )


def train_to_files(
    data_root: Path,
    config: RetrainConfig,
    out_dir: Path,
    on_metrics=None,
    progress=None,
    resume: bool = False,
    cache_dir: Path | None = None,
    dataset_md5: str | None = None,
) -> TrainOutcome | None:
    """Train on the ImageFolder at data_root; write generator.safetensors, samples/, loss_curves.png, result.json.

    Checkpoints go to out_dir/checkpoints; resume=True continues from the newest valid one. With `cache_dir` the
    images are decoded once into a memory-mapped cache there (data.cache; keyed by `dataset_md5`, DVC's md5 of the
    folder, when the caller checked the folder against it) instead of into memory. Returns the
    outcome (None on ranks other than 0, which write nothing).
    """
    out_dir = Path(out_dir)
    labels = config.validation.labels
    config_dict = config_to_dict(config)
    rank, world, _ = dist_info()
    images, targets = _training_images(Path(data_root), labels, cache_dir, dataset_md5, progress if rank == 0 else None)

    def on_samples(step, samples):
        save_grid(samples, out_dir / "samples" / f"step_{step:06d}.png")

    result = train_gan(
        images,
        targets,
        config.train,
        config.seed,
        config_dict,
        on_metrics=on_metrics,
        on_samples=on_samples,
        progress=progress,
        checkpoint_dir=out_dir / "checkpoints",
        resume=resume,
        num_classes=len(labels),
    )
    if rank != 0:
        return None
    weights = save_generator(out_dir / "generator.safetensors", result.generator, result.spec, config_dict)
    outcome = TrainOutcome(
        weights=weights,
        grids=sorted((out_dir / "samples").glob("*.png")),
        loss_plot=save_loss_plot(result.history, out_dir / "loss_curves.png"),
        steps=result.steps,
        resumed_from=result.resumed_from,
        seconds=result.seconds,
        device=result.device,
        world_size=world,
        spec=result.spec,
        images=int(len(images)),
        history=result.history,
        final={k: v[-1] for k, v in result.history.items() if k != "step" and v},
        weights_sha256=file_digest(weights),
    )
    write_text(out_dir / RESULT, json.dumps(outcome.to_dict(out_dir), indent=2))  # last: the job's commit point
    return outcome


def validate_and_train(
    data_root: Path,
    config: RetrainConfig,
    out_dir: Path,
    state: Path,
    progress=None,
    resume: bool = False,
    cache_dir: Path | None = None,
    dataset_md5: str | None = None,
) -> TrainOutcome | None:
    """`ganops train`: the flow's validation of data_root first (ValidationFailed names each bad file), then
    train_to_files."""
    require_valid(Path(data_root), config.validation, state)
    return train_to_files(data_root, config, out_dir, progress=progress, resume=resume, cache_dir=cache_dir, dataset_md5=dataset_md5)


def image_cache_dir(project_dir: Path) -> Path:
    """Where a project's decoded datasets live (data.cache)."""
    return state_dir(project_dir) / "cache" / "images"


RDZV_ENDPOINT_ENV, RDZV_ID_ENV = "GANOPS_RDZV_ENDPOINT", "GANOPS_RDZV_ID"
JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an indexed job
ENDPOINT = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?:[0-9]{1,5}")


def torchrun_args(nproc: int, nnodes: int, env: dict, default_id: str) -> list[str]:
    """torchrun's options: one node is --standalone; several meet at a c10d rendezvous whose endpoint (host:port,
    the same on every node: the store runs on the node whose address it names) and id come from the job's
    environment. Raises GanopsError naming the variable."""
    if nnodes == 1:
        return ["--standalone", f"--nproc-per-node={nproc}"]
    endpoint = env.get(RDZV_ENDPOINT_ENV, "")
    if not ENDPOINT.fullmatch(endpoint):
        raise GanopsError(f"train.nnodes is {nnodes}: set {RDZV_ENDPOINT_ENV} to the rendezvous host:port on every node (got {endpoint!r})")
    rdzv_id = env.get(RDZV_ID_ENV) or default_id
    check_path_name(rdzv_id, RDZV_ID_ENV)
    args = [f"--nnodes={nnodes}", f"--nproc-per-node={nproc}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", f"--rdzv-id={rdzv_id}"]
    index = env.get(JOB_INDEX_ENV, "")
    if index.isdigit():  # a Kubernetes indexed job: pod 0 hosts the store behind the endpoint's Service name
        args.append(f"--rdzv-conf=is_host={'true' if index == '0' else 'false'}")
    return args


def launch_command(
    config_file: Path,
    data_root: Path,
    out_dir: Path,
    launcher: str,
    nproc: int,
    project_dir: Path,
    nnodes: int = 1,
    dataset_md5: str | None = None,
) -> list[str]:
    """The command that runs `ganops train` as its own process, or under torchrun with `nproc` processes on each of
    `nnodes` nodes (the flow validated the data already)."""
    args = [
        "-m",
        "flows.cli",
        "train",
        "--config",
        str(config_file),
        "--data",
        str(data_root),
        "--out",
        str(out_dir),
        "--resume",
        "--no-validate",
        "-C",
        str(project_dir),
    ] + (["--dataset-md5", check_md5(dataset_md5)] if dataset_md5 is not None else [])
    # Under core.watchdog: the training process dies with the flow's process, even when that one is SIGKILLed.
    watched = [sys.executable, "-m", "components.core.watchdog", str(os.getpid()), "--"]
    if launcher == "torchrun":
        return [
            *watched,
            sys.executable,
            "-m",
            "torch.distributed.run",
            *torchrun_args(nproc, nnodes, dict(os.environ), out_dir.name),
            *args,
        ]
    return [*watched, sys.executable, *args]


def train_in_subprocess(
    data_root: Path, config: RetrainConfig, out_dir: Path, project_dir: Path, dataset_md5: str | None = None
) -> TrainOutcome:
    """Run the job in a child process (plain or torchrun) and return its result.json. The child's output is
    printed line by line as it comes (its progress reaches the flow's log and a worker's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = write_text(out_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    cmd = launch_command(
        config_file, data_root, out_dir, effective_launcher(config.train), config.train.nproc, project_dir, config.train.nnodes, dataset_md5
    )
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
        for line in cast(IO[str], child.stdout):  # stdout=PIPE, text=True: always a text stream
            print(line.rstrip(), flush=True)
            tail = (tail + [line.rstrip()])[-15:]
    if child.returncode != 0:
        raise GanopsError(f"training process failed (exit {child.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    return read_outcome(out_dir)


def effective_launcher(train: TrainConfig) -> str:
    """The configured launcher, except that more than one process or node always means torchrun."""
    return "torchrun" if train.nproc > 1 or train.nnodes > 1 else train.launcher


def run_training(
    data_root: Path, config: RetrainConfig, out_dir: Path, project_dir: Path, on_metrics=None, progress=None, dataset_md5: str | None = None
) -> TrainOutcome:
    """The flow's training step into out_dir, a folder named by the training key (identity.training_key): its
    finished result when the weights are intact, else training that resumes from the folder's checkpoints, in this
    process or (launcher subprocess/torchrun) in a child."""
    with file_lock(out_dir.parent / f"{out_dir.name}.lock"):  # one writer per folder (two models may share a key)
        done = finished_outcome(out_dir)
        if done is not None:
            return done
        if effective_launcher(config.train) == "inprocess":
            outcome = train_to_files(
                data_root,
                config,
                out_dir,
                on_metrics=on_metrics,
                progress=progress,
                resume=True,
                cache_dir=image_cache_dir(project_dir),
                dataset_md5=dataset_md5,
            )
            if outcome is None:  # only ranks other than 0 get None, and in-process training is one process
                raise GanopsError(f"in-process training into {out_dir} ran as a rank other than 0 and wrote no result")
            return outcome
        return train_in_subprocess(data_root, config, out_dir, project_dir, dataset_md5)
