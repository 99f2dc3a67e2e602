"""Lineage: the tags every model version carries, and the chain read back from them."""
