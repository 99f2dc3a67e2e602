"""What `ganops data import` refuses before anything is written or pushed: the source folder's entries the copy
could not take as they are (links to folders or to nothing, hidden folders holding images), and every file the
validation's per-file checks would refuse (components.data.manifest: empty, not decodable, over the pixel limit
from its header alone, content not matching its suffix, outside a label folder, or of another size than the rest).

One (path, reason) pair per bad file; `refusal` turns them into one DataError with one line each.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pandas as pd

from components.core.errors import DataError
from components.data.images import SUFFIX_FORMATS
from components.data.manifest import CHANNELS, DECODES, ERROR, FORMAT, FORMAT_OK, HEIGHT, LABEL, PATH, WIDTH, build_manifest

MAX_LINES = 100  # bad files named one per line; the rest counted


def _images_under(folder: Path) -> int:
    return sum(1 for _, _, files in os.walk(folder) for name in files if Path(name).suffix.lower() in SUFFIX_FORMATS)


def scan_source(source: Path) -> list[tuple[str, str]]:
    """(path relative to `source`, why) for each entry of a source folder a copy would drop or could not take:
    a link to a folder (never followed), a link to nothing or out of the source, a hidden folder or file that holds
    images (hidden entries are not data, so they would vanish). Links are not followed while walking."""
    root = source.resolve()
    bad: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(source, followlinks=False):
        here = Path(folder)
        for name in sorted(dirs):
            rel = (here / name).relative_to(source).as_posix()
            if (here / name).is_symlink():
                bad.append(
                    (rel, f"is a link to the folder {os.path.realpath(here / name)}: links to folders are not followed, copy the folder in")
                )
            elif name.startswith(".") and _images_under(here / name):
                bad.append(
                    (
                        rel,
                        f"is a hidden folder (its name starts with '.') holding {_images_under(here / name)} images, which the dataset would skip: rename it",
                    )
                )
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (here / d).is_symlink()]
        for name in sorted(files):
            path, rel = here / name, (here / name).relative_to(source).as_posix()
            if name.startswith("."):
                if Path(name).suffix.lower() in SUFFIX_FORMATS:
                    bad.append((rel, "is a hidden image file (its name starts with '.'), which the dataset would skip: rename it"))
            elif path.is_symlink() and not path.exists():
                bad.append((rel, f"is a link to {os.readlink(path)}, which does not exist"))
            elif path.is_symlink() and not path.resolve().is_relative_to(root):
                bad.append(
                    (rel, f"is a link to {path.resolve()}, outside the source folder {source}: copy the file in instead of linking it")
                )
    return bad


def _shape(row) -> tuple[int, int, int]:
    return int(row[WIDTH]), int(row[HEIGHT]), int(row[CHANNELS])


def manifest_problems(manifest: pd.DataFrame) -> list[tuple[str, str]]:
    """(path, why) for each manifest row that validation's per-file rules refuse whatever the config says: a file
    that does not decode (empty, corrupt, over the pixel limit), content that is not what its suffix says, a file
    outside a label folder, and an image whose size or channel count differs from the most common one."""
    bad: list[tuple[str, str]] = []
    decoded = manifest[manifest[DECODES]]
    common = Counter(_shape(row) for _, row in decoded.iterrows()).most_common(1)
    for _, row in manifest.iterrows():
        path = row[PATH]
        if not row[DECODES]:
            bad.append((path, row[ERROR] or "does not decode as an image"))
        elif not row[FORMAT_OK]:
            bad.append((path, f"its content is {row[FORMAT]}, not the format its suffix {Path(path).suffix or '(none)'} names"))
        elif pd.isna(row[LABEL]):
            bad.append((path, "sits outside a label folder (expected <dir>/<label>/<image>)"))
        elif common and _shape(row) != common[0][0]:
            (w, h, c), (cw, ch, cc) = _shape(row), common[0][0]
            bad.append((path, f"is {w}x{h} with {c} channel(s), the dataset's other images are {cw}x{ch} with {cc} (one image size)"))
    return bad


def check_folder(folder: Path, max_pixels: int) -> list[tuple[str, str]]:
    """The manifest of a built dataset folder, checked by `manifest_problems`."""
    return manifest_problems(build_manifest(folder, max_pixels))


def refusal(source: str, bad: list[tuple[str, str]]) -> DataError:
    """One DataError naming each bad file on its own line (the first MAX_LINES), and that nothing was written."""
    lines = [f"{source.rstrip('/')}/{path}: {why}" for path, why in bad[:MAX_LINES]]
    more = f" ({len(bad) - MAX_LINES} more not shown)" if len(bad) > MAX_LINES else ""
    lines.append(
        f"{source}: {len(bad)} file(s) refused{more}; nothing was imported (the data folder, its .dvc file and the DVC remote are untouched)"
    )
    return DataError("\n".join(lines))
