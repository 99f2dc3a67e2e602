"""Validation: the per-image manifest, the Great Expectations suite, drift, and the report type."""
