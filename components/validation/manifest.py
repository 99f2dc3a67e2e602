"""The per-image manifest validation checks: built by `components.data.manifest`, which `ganops data import` runs too,
so an import refuses a file for the same reason validation would."""

from __future__ import annotations

from components.data.manifest import (
    BYTES,
    CHANNELS,
    COLUMNS,
    DECODES,
    DEFAULT_MAX_PIXELS,
    ERROR,
    FORMAT,
    FORMAT_OK,
    HEIGHT,
    INSIDE,
    LABEL,
    MEAN,
    MODE,
    PATH,
    SHA256,
    STD,
    WIDTH,
    build_manifest,
    inspect_file,
)

__all__ = [
    "BYTES",
    "CHANNELS",
    "COLUMNS",
    "DECODES",
    "DEFAULT_MAX_PIXELS",
    "ERROR",
    "FORMAT",
    "FORMAT_OK",
    "HEIGHT",
    "INSIDE",
    "LABEL",
    "MEAN",
    "MODE",
    "PATH",
    "SHA256",
    "STD",
    "WIDTH",
    "build_manifest",
    "inspect_file",
]
