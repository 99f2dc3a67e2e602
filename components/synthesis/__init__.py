"""Synthetic data: sample a verified generator on demand, check its quality per class, rebalance a dataset."""
