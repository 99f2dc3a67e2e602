"""Registry: MLflow tracking (runs, metrics, artifacts) and the Model Registry (versions, aliases, weights)."""
