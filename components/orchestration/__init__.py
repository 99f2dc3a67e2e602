"""Orchestration: deploying the flows to a Prefect server (work pools, deployments) and the events that trigger them."""
