"""Serving: the export folder and the MLflow pyfunc model that registered versions load with."""
