"""ganops flows: Prefect orchestration over components, and the `ganops` command line."""
