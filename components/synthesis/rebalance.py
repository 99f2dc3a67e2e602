"""`ganops rebalance`: count the classes, generate what each minority class lacks, write a new ImageFolder.

The plan is a pure function of the counts, the target and the synthetic-fraction bound. The output holds the real
files as they were and the synthetic ones named `synthetic-v<version>-<i>.png`, with a hidden manifest naming the
generator (model, version, weights and export hashes, its own training data md5), the seed, each class's counts,
the quality check's numbers and every synthetic file's sha256. Imported as a DVC version, the manifest is part of
the dataset's md5, so lineage can follow a synthetic image back to the generator and the data that trained it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from components.config import ValidationConfig
from components.core.atomic import bytes_digest, json_bytes, replace_folder
from components.core.errors import GanopsError
from components.core.names import GAN, OVERSAMPLE, OVERSAMPLED_PREFIX, SMOTE_PREFIX, SYNTHETIC_MANIFEST, SYNTHETIC_PREFIX
from components.data.images import list_files
from components.data.importers import copy_image_folder
from components.data.png import encode_png
from components.serving.runtime import Served
from components.synthesis.generate import check_output
from components.synthesis.methods import Added

MAX = "max"


@dataclass(frozen=True)
class ClassPlan:
    label: str
    real: int
    synthetic: int  # images to generate
    target: int  # what the class should reach
    capped: bool  # the synthetic-fraction bound kept it under the target


def parse_target(text: str) -> str | int:
    """--target: 'max' (the largest class's count) or a positive count. Raises GanopsError."""
    if text == MAX:
        return MAX
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise GanopsError(f"--target {text!r} must be 'max' or a positive number of images per class")


def plan_rebalance(counts: dict[str, int], target: str | int, max_fraction: float, only: list[str] | None = None) -> list[ClassPlan]:
    """How many images each class (of `only`, when given) gets so it reaches `target` real + synthetic, never more
    synthetic than `max_fraction` of the class (pure). A class with no real image is refused: nothing would check them."""
    if not 0 < max_fraction < 1:
        raise GanopsError(f"--max-synthetic-fraction {max_fraction} must lie strictly between 0 and 1")
    unknown = [label for label in only or [] if label not in counts]
    if unknown:
        raise GanopsError(f"--class {unknown[0]!r} is not a class of the generator ({', '.join(counts)})")
    goal = max(counts.values(), default=0) if target == MAX else int(target)
    plans = []
    for label, real in counts.items():
        need = max(0, goal - real) if not only or label in only else 0
        if need and not real:
            raise GanopsError(
                f"class {label!r} has no real image: nothing to check its synthetic images against (add some, or leave it out with --class)"
            )
        cap = math.floor(max_fraction * real / (1 - max_fraction) + 1e-9)  # s / (real + s) <= max_fraction
        plans.append(ClassPlan(label, real, min(need, cap), goal, need > cap))
    return plans


def count_classes(data: Path, labels: list[str]) -> dict[str, int]:
    """Real files per label folder (every label of the generator, 0 when absent). Refuses files outside a label
    folder, unknown labels, and a folder that holds synthetic files already (rebalance the real data)."""
    if not data.is_dir():
        raise GanopsError(f"--data {data} is not a folder")
    counts = {label: 0 for label in labels}
    for rel in list_files(data):
        if len(rel.parts) != 2:
            raise GanopsError(f"{data / rel} is not inside a label folder (<data>/<label>/<image>)")
        if rel.parts[0] not in counts:
            raise GanopsError(
                f"{data / rel.parts[0]}: the generator does not know the class {rel.parts[0]!r} (it knows {', '.join(labels)})"
            )
        if rel.name.startswith(SYNTHETIC_PREFIX):
            raise GanopsError(f"{data / rel} is synthetic already (named {SYNTHETIC_PREFIX}*); rebalance the real data instead")
        if rel.name.startswith(OVERSAMPLED_PREFIX):
            raise GanopsError(f"{data / rel} is a repeat a rebalance wrote (named {OVERSAMPLED_PREFIX}*); rebalance the real data instead")
        counts[rel.parts[0]] += 1
    if not any(counts.values()):
        raise GanopsError(f"--data {data} holds no images")
    return counts


def synthetic_prefix(served: Served) -> str:
    return f"{SYNTHETIC_PREFIX}v{served.version}-"


def rebalanced_validation(cfg: ValidationConfig, max_fraction: float) -> ValidationConfig:
    """The validation a rebalanced set gets: the imbalanced profile, and at most `max_fraction` synthetic per class."""
    return cfg.model_copy(update={"profile": "imbalanced", "max_synthetic_fraction": max_fraction})


@dataclass(frozen=True)
class AddedFile:
    kind: str  # gan, smote or oversample
    blob: bytes
    source: str = ""  # a repeated real file: its path in the data


def added_files(added: Added, data: Path, real_files: list[Path], labels: list[str], prefix: str) -> dict[str, AddedFile]:
    """{relative path: file} of the added images: generated ones `<prefix><i>.png`, SMOTE's `synthetic-smote-<i>.png`
    (both synthetic: counted by validation's bound, verified by lineage), and repeated real files with their own
    bytes as `oversampled-<k>-<name>`. `real_files` are the data's files in the order of the rows of the real set."""
    out: dict[str, AddedFile] = {}
    counters: dict[tuple[str, int], int] = {}
    repeated = iter(added.repeated_from)
    for image, c, kind in zip(added.x, added.y, added.kind, strict=True):
        k = counters[(kind, int(c))] = counters.get((kind, int(c)), -1) + 1
        label = labels[int(c)]
        if kind == OVERSAMPLE:
            source = real_files[next(repeated)]
            out[f"{label}/{OVERSAMPLED_PREFIX}{k:05d}-{source.name}"] = AddedFile(kind, (data / source).read_bytes(), source.as_posix())
            continue
        name = f"{prefix}{k:05d}.png" if kind == GAN else f"{SMOTE_PREFIX}{k:05d}.png"
        out[f"{label}/{name}"] = AddedFile(kind, encode_png(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)))
    return out


def write_rebalanced(data: Path, out: Path, added: Added, labels: list[str], prefix: str, record: dict, force: bool = False) -> dict:
    """Write the real files and the added ones into `out` (built under a temporary name, then renamed), with the
    manifest (`record`, every synthetic file's sha256, each repeated file's source) last. Returns the manifest."""
    check_output(out, force, data)
    files = added_files(added, data, list_files(data), labels, prefix)

    def build(tmp: Path) -> dict:
        copy_image_folder(data, tmp)
        for rel, file in files.items():
            (tmp / rel).write_bytes(file.blob)
        manifest = {
            **record,
            "files": {rel: bytes_digest(f.blob) for rel, f in files.items() if f.kind != OVERSAMPLE},
            "repeated": {rel: f.source for rel, f in files.items() if f.kind == OVERSAMPLE},
        }
        (tmp / SYNTHETIC_MANIFEST).write_bytes(json_bytes(manifest))
        return manifest

    return replace_folder(build, out)


def format_plan(plan: list[ClassPlan]) -> str:
    rows = []
    for p in plan:
        note = " (capped by the synthetic-fraction bound)" if p.capped else ""
        rows.append(f"  {p.label:>8}  {p.real:6d} real + {p.synthetic:6d} added = {p.real + p.synthetic:6d} (target {p.target}){note}")
    return "\n".join(rows)
