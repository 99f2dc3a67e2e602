"""Shared basics every stage may import: errors, atomic files, state paths, devices, pixels, names, registries."""
