"""Training: networks, losses and optimizers (registered by name), the engine, checkpoints, weights, the job."""
