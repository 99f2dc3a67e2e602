"""Log a generator as an MLflow pyfunc "model from code" and register it.

The model carries its weights (safetensors) and only the modules that loading them needs: the import closure of
`pyfunc_generator.py`, read from source (core.imports), copied with their package layout. Versions registered
before this layout carry their own full code copy and keep loading with it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

from components.core.atomic import file_digest
from components.core.imports import closure, import_graph, module_file
from components.core.names import ARTIFACT_MODEL, ARTIFACT_WEIGHTS, TAG_MODEL_FILES
from components.core.paths import SOURCE_ROOT
from components.training.weights import read_metadata

MODEL_CODE = Path(__file__).with_name("pyfunc_generator.py")
LOADER_MODULE = "components.training.weights"  # what MODEL_CODE imports when MLflow loads it
REGISTRATION_NOTE = "registered_model_meta"  # MLflow adds it (model name and version) when the version is created
PIP_REQUIREMENTS = ["torch==2.13.0", "safetensors", "numpy"]


def model_code_files(dest: Path) -> Path:
    """Copy the modules the loader needs (with their packages' __init__ files) under dest/components/."""
    graph = import_graph(SOURCE_ROOT, ("components",))
    for module in sorted(closure(graph, LOADER_MODULE)):
        src = module_file(module, SOURCE_ROOT)
        target = dest / src.relative_to(SOURCE_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return dest / "components"


def model_file_digests(folder: Path) -> dict[str, str]:
    """{path relative to the model folder: sha256} of every file of a logged model, as recorded at registration
    (tag ganops.model_files) and recomputed by `ganops audit`: a models-from-code package runs its code at load."""
    return {
        p.relative_to(folder).as_posix(): file_digest(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != REGISTRATION_NOTE
    }


def generator_signature(weights_path: Path):
    """The pyfunc's signature (latents (N, z_dim [+ 1 label column]) -> images (N, C, H, W), float32) and a
    two-row input example, from the spec in the weights file. The tensors are unnamed: MLflow then hands predict
    the array itself (a named one arrives as a dict)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    spec, _ = read_metadata(weights_path)
    width = spec.z_dim + int(spec.conditional)
    example = np.random.default_rng(0).standard_normal((2, width)).astype(np.float32)
    if spec.conditional:
        example[:, -1] = [0, spec.num_classes - 1]
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, width))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, spec.channels, spec.image_size, spec.image_size))]),
    )
    return signature, example


def register_generator(mlc, run_id: str, weights_path: Path, model_name: str, tags: dict) -> str:
    """Log the generator to the run as a pyfunc model (from code, no pickle) and register it with `tags`, which
    the registry stores in the same call that creates the version (so a version never exists without its
    training key). Returns the version."""
    import mlflow
    from mlflow.models import Model

    # Model.log with run_id, not inside mlflow.start_run(run_id): leaving that block would mark the training run
    # FINISHED here, before the flow has decided, exported and finished it.
    signature, example = generator_signature(weights_path)
    with tempfile.TemporaryDirectory(prefix="ganops-model-code-") as tmp, warnings.catch_warnings():
        # The generator takes a latent array, not typed records: MLflow's type-hint advice does not apply.
        warnings.filterwarnings("ignore", message=".*type hints.*")
        # The logged model goes in the run's experiment (Model.log alone would use the active one: Default, whose
        # artifacts land in ./mlruns of the current folder).
        logged = mlc.create_logged_model(mlc.get_run(run_id).info.experiment_id, name=ARTIFACT_MODEL, source_run_id=run_id)
        info = Model.log(
            artifact_path=None,
            name=ARTIFACT_MODEL,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=logged.model_id,
            python_model=str(MODEL_CODE),
            artifacts={ARTIFACT_WEIGHTS: str(weights_path)},
            code_paths=[str(model_code_files(Path(tmp)))],
            pip_requirements=PIP_REQUIREMENTS,
            signature=signature,
            input_example=example,
        )
        logged_files = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(Path(tmp) / "logged")))
        files = json.dumps(model_file_digests(logged_files), sort_keys=True, separators=(",", ":"))
    tags = {**{k: str(v) for k, v in tags.items()}, TAG_MODEL_FILES: files}
    return str(mlflow.register_model(info.model_uri, model_name, tags=tags).version)
