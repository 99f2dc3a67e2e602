"""Generator weights on disk: safetensors with the architecture spec and resolved config in its metadata.

Nothing is unpickled: safetensors holds only tensors and string metadata. The header is written in canonical form
(sorted keys): safetensors serializes its metadata from a hash map in random order, so the same weights gave
different bytes and a different sha256 from one save to the next.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import cast

import torch
from safetensors.torch import load_file, safe_open, save

from components.core.atomic import replace_file
from components.core.errors import GanopsError
from components.training.networks import GeneratorSpec, build_generator

SPEC_KEY, CONFIG_KEY = "ganops.generator_spec", "ganops.config"


def save_generator(path: Path, generator: torch.nn.Module, spec: GeneratorSpec, config: dict) -> Path:
    """Write weights + spec + config atomically (temporary name, then rename)."""
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    metadata = {SPEC_KEY: json.dumps(spec.to_dict()), CONFIG_KEY: json.dumps(config)}
    blob = canonical_safetensors(save(state, metadata=metadata))
    replace_file(lambda tmp: tmp.write_bytes(blob), path)
    return path


def canonical_safetensors(blob: bytes) -> bytes:
    """The same file with its JSON header's keys sorted (padded with spaces to 8 bytes, as the format allows): equal
    tensors and metadata give equal bytes. Tensor offsets are relative to the data, which is unchanged."""
    size = struct.unpack("<Q", blob[:8])[0]
    header = json.dumps(json.loads(blob[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + blob[8 + size :]


def read_metadata(path: Path) -> tuple[GeneratorSpec, dict]:
    """(spec, config) stored in a generator file. Raises GanopsError naming the file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return GeneratorSpec.from_dict(json.loads(meta[SPEC_KEY])), json.loads(meta.get(CONFIG_KEY, "{}"))
    except Exception as e:  # safetensors, JSON and missing keys all mean "not a ganops generator file"
        raise GanopsError(f"{path} is not a ganops generator file ({type(e).__name__}: {e})") from None


def load_generator(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, GeneratorSpec, dict]:
    """Rebuild the generator stored at `path` in eval mode. Returns (generator, spec, config). Raises GanopsError
    naming the file and tensor when a weight is NaN or infinite (it would turn every sample into NaN)."""
    spec, config = read_metadata(path)
    generator = build_generator(spec)
    state = load_file(str(path), device=device)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise GanopsError(f"{path}: tensor {name} holds NaN or infinite values; refusing to load the generator")
    generator.load_state_dict(state)
    return generator.to(device).eval(), spec, config


def sample(
    generator: torch.nn.Module,
    count: int,
    seed: int,
    batch_size: int = 500,
    device: str = "cpu",
    labels: torch.Tensor | None = None,
    to_host: bool = True,
) -> torch.Tensor:
    """`count` images in [-1, 1] from a fixed noise seed, so two generators see the same z (drawn on the host: the
    same on every device). `to_host=False` leaves them on `device`.

    A conditional generator gets `labels` (default: the classes in turn, so every class is equally represented).
    """
    gen = torch.Generator().manual_seed(seed)
    classes = getattr(generator, "num_classes", 0)
    if classes and labels is None:
        labels = torch.arange(count) % classes
    out = []
    with torch.no_grad():
        for start in range(0, count, batch_size):
            n = min(batch_size, count - start)
            z = torch.randn(n, cast(int, generator.z_dim), generator=gen).to(device)  # every registered generator sets z_dim
            y = labels[start : start + n].to(device) if classes and labels is not None else None
            images = generator(z, y).float()
            out.append(images.cpu() if to_host else images)
    return torch.cat(out)
