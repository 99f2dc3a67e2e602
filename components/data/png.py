"""A deterministic PNG writer: stored (uncompressed) deflate blocks, so the bytes depend on nothing but this code
and every machine writes the same files (the committed `data.dvc` matches a fresh import)."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _zlib_stored(raw: bytes) -> bytes:
    """A zlib stream of uncompressed ('stored') deflate blocks: valid everywhere, identical everywhere."""
    out = bytearray(b"\x78\x01")
    blocks = [raw[i : i + 65535] for i in range(0, len(raw), 65535)] or [b""]
    for i, block in enumerate(blocks):
        final = 1 if i == len(blocks) - 1 else 0
        out += bytes([final]) + struct.pack("<HH", len(block), len(block) ^ 0xFFFF) + block
    out += struct.pack(">I", zlib.adler32(raw))
    return bytes(out)


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode a uint8 array (H, W) grayscale or (H, W, 3) RGB as PNG bytes, deterministically."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"encode_png takes uint8 (H, W) or (H, W, 3), got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    color_type = 0 if pixels.ndim == 2 else 2
    rows = pixels.reshape(height, -1)
    raw = b"".join(b"\x00" + rows[r].tobytes() for r in range(height))  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", _zlib_stored(raw)) + _png_chunk(b"IEND", b"")
