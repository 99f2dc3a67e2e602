"""What a training result depends on, as one key: the dataset's md5, the settings that shape the weights, and the
code that trains (its source files, read from disk, and the torch version).

The flow trains into a folder named by the key: a rerun after a crash resumes from that folder's checkpoints or
reuses its finished result, and a registered version carrying the key is never registered again.
"""

from __future__ import annotations

import functools
import hashlib
import json

from components.config import RetrainConfig
from components.core.imports import closure, import_graph, module_file
from components.core.paths import SOURCE_ROOT

TRAINER_MODULE = "components.training.job"
# Train settings that change how training is run or reported, not the weights it produces.
NOT_TRAINING_INPUTS = frozenset({"launcher", "work_pool", "job_timeout", "log_every", "sample_every", "checkpoint_every"})


@functools.cache
def code_digest() -> str:
    """sha256 of the trainer's import closure (module names and file bytes) and the torch version."""
    import torch

    graph = import_graph(SOURCE_ROOT, ("components",))
    digest = hashlib.sha256(f"torch {torch.__version__}\n".encode())
    for module in sorted(closure(graph, TRAINER_MODULE)):
        digest.update(f"{module}\n".encode() + module_file(module, SOURCE_ROOT).read_bytes() + b"\n")
    return digest.hexdigest()


def training_inputs(config: RetrainConfig) -> dict:
    """The part of the config that decides the trained weights (with the data and the code)."""
    train = {k: v for k, v in config.train.model_dump(mode="json").items() if k not in NOT_TRAINING_INPUTS}
    return {"seed": config.seed, "labels": list(config.validation.labels), "train": train}


def training_key(dataset_md5: str, config: RetrainConfig, code: str | None = None) -> str:
    """24 hex characters naming one training result: same data, settings and code give the same key."""
    text = json.dumps({"dataset_md5": dataset_md5, "config": training_inputs(config), "code": code or code_digest()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
