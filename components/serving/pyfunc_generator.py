"""MLflow "models from code" definition of a registered generator.

MLflow runs this file when the model is loaded (it is never imported by the pipeline), so nothing is
unpickled: the weights come from the safetensors artifact and the code from the model's code_paths, which hold
only the modules this file needs (see mlflow_model.py).
Input: an array of latent vectors (N, z_dim); for a conditional generator (N, z_dim + 1) with the class label in
the last column. Output: images (N, C, H, W) in [-1, 1].
"""

from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from components.training.weights import load_generator


class GeneratorModel(PythonModel):
    def load_context(self, context):
        self.generator, self.spec, _ = load_generator(Path(context.artifacts["weights"]))

    def predict(self, context, model_input, params=None):
        conditional = self.spec.conditional
        width = self.spec.z_dim + conditional
        array = np.asarray(model_input, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != width or not np.isfinite(array).all():
            raise ValueError(
                f"expected finite latents of shape (N, {width}), got {array.shape}"
                + ("" if np.isfinite(array).all() else " with NaN or infinite values")
            )
        x = torch.as_tensor(array)
        z, y = (x[:, :-1], x[:, -1].long()) if conditional else (x, None)
        with torch.no_grad():
            return self.generator(z, y).numpy()


mlflow.models.set_model(GeneratorModel())
