"""Standard Inception FID between any two sources: a registered generator, a folder of images, or an .npz of
precomputed statistics (`mu`, `sigma`, as pytorch-fid writes them).

Features stream batch by batch into a StatsAccumulator (with a capped sample for KID and precision/recall).
Images go to the extractor's device before the resize, so on a GPU the resize runs there too; a generator's
images, Inception's features and the float64 statistics stay on the GPU until the statistics are read.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from components.core.atomic import replace_file
from components.core.device import pick_device
from components.core.errors import GanopsError
from components.core.names import FID_INCEPTION, INCEPTION, INCEPTION_SCORE, INCEPTION_SCORE_NOTE, metric_name
from components.core.pixels import to_uint8
from components.core.progress import progress_bar
from components.data.images import SUFFIX_FORMATS, list_image_files
from components.evaluation.extra import bootstrap_fid, kid, precision_recall
from components.evaluation.extractors import EXTRACTORS, FP32, ExtractorInputs
from components.evaluation.frechet import frechet_distance
from components.evaluation.inception import FEATURE_DIM
from components.evaluation.stats import StatsAccumulator, load_stats, save_stats
from components.registry.models import download_weights, parse_model_ref, resolve_version
from components.registry.tracking import client
from components.training.weights import load_generator, sample

INCEPTION_SCORE_TEXT = "not available: the FID Inception weights (pool3 only) have no logits layer"


def folder_batches(folder: Path, batch_size: int) -> Iterator[torch.Tensor | list[torch.Tensor]]:
    """uint8 RGB batches (B, 3, H, W) of every image under `folder` (sorted); a batch of mixed sizes comes as a list
    of (3, H, W) images."""
    files = [folder / rel for rel in list_image_files(folder)]
    if not files:
        raise GanopsError(f"folder {folder} holds no images ({', '.join(sorted(SUFFIX_FORMATS))})")
    for i in range(0, len(files), batch_size):
        batch = []
        for path in files[i : i + batch_size]:
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"))
            except Exception as e:
                raise GanopsError(f"{path} cannot be read as an image ({type(e).__name__}: {e})") from None
            batch.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
        sizes = {tuple(t.shape) for t in batch}
        yield torch.stack(batch) if len(sizes) == 1 else batch  # mixed sizes: the caller preprocesses one by one


def generator_batches(weights: Path, count: int, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 batches of `count` generated images (quantized as PNGs would be), generated on the GPU when there is one
    and left there for the extractor."""
    generator, _, _ = load_generator(weights)
    device = pick_device("auto")
    generator.to(device)
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        yield to_uint8(sample(generator, n, seed + start, batch_size, str(device), to_host=False))


def accumulate(extractor, batches, keep: int, progress=None) -> StatsAccumulator:
    """Stream every batch's features into one accumulator; `progress.update(images)` after each batch."""
    acc = StatsAccumulator(keep=keep)
    for batch in batches:
        if isinstance(batch, list):
            for image in batch:
                acc.add(extractor(image[None]))
        else:
            acc.add(extractor(batch))
        if progress is not None:
            progress.update(len(batch))
    return acc


def folder_fingerprint(folder: Path) -> str:
    """A key for a folder's statistics: every image's path, size and modification time (a changed file, a new or
    removed one gives another key)."""
    digest = hashlib.sha256()
    for rel in list_image_files(folder):
        info = (folder / rel).stat()
        digest.update(f"{rel}\t{info.st_size}\t{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def folder_key(folder: Path, keep: int) -> str:
    """The cache key of a folder's statistics with a feature sample of `keep` rows."""
    return f"folder-{folder_fingerprint(folder)}-keep{keep}"


def source_size(kind: str, value, num_samples: int) -> int:
    """How many images a source puts through Inception: a folder's, a generator's samples, none for statistics."""
    return len(list_image_files(value)) if kind == "folder" else num_samples if kind == "model" else 0


def fid_plan(sources: list[tuple[str, str, int]], extractor, cached: list[bool]) -> str:
    """One line: what each side is, how many images go through Inception, on which device, in which batches."""
    sides = [
        f"{label} = {text} ({'statistics' if n == 0 else 'cached statistics' if hit else f'{n:,} images'})"
        for (label, text, n), hit in zip(sources, cached, strict=True)
    ]
    total = sum(n for (_, _, n), hit in zip(sources, cached, strict=True) if not hit)
    tf32 = " in TF32" if extractor.allow_tf32 else ""
    return (
        f"FID plan: {'; '.join(sides)}; Inception-v3 (pool3, {FEATURE_DIM}-d) on {extractor.device}{tf32}, batches of "
        f"{extractor.batch_size}: {total:,} images to embed"
    )


def resolve_source(text: str, project_dir: Path, stack: ExitStack) -> tuple[str, Path]:
    """('npz', path) | ('folder', path) | ('model', weights path) for a command-line source; a model's weights
    are downloaded into a folder that lives as long as `stack`."""
    path = Path(text)
    if path.suffix == ".npz":
        if not path.is_file():
            raise GanopsError(f"statistics file {path} does not exist")
        return "npz", path
    if path.is_dir():
        return "folder", path
    if text.startswith("models:/") or "@" in text:
        name, ref = parse_model_ref(text)
        mv = resolve_version(client(project_dir), name, ref)
        return "model", stack.enter_context(download_weights(mv))
    raise GanopsError(f"{text!r} is not a folder, an .npz of statistics, or a registered model (NAME@ALIAS, models:/NAME/VERSION)")


def source_stats(
    kind: str, value, extractor, num_samples: int, seed: int, keep: int, cache_dir: Path | None = None, progress=None
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """(mu, sigma) and a feature sample (empty for .npz) of one source; a folder's are cached under cache_dir."""
    if kind == "npz":
        try:
            stats = load_stats(value)
        except ValueError as e:
            raise GanopsError(str(e)) from None
        if stats[0].size != FEATURE_DIM:
            raise GanopsError(f"{value} holds {stats[0].size}-d statistics; Inception FID needs {FEATURE_DIM}-d")
        return stats, np.zeros((0, FEATURE_DIM))
    if kind == "folder" and cache_dir is not None:  # the default weights only: the key does not name others
        stats, features, _ = reference_stats_cached(cache_dir, folder_key(value, keep), value, extractor, keep, progress)
        return stats, features
    batches = (
        folder_batches(value, extractor.batch_size)
        if kind == "folder"
        else generator_batches(value, num_samples, seed, extractor.batch_size)
    )
    acc = accumulate(extractor, batches, keep, progress)
    if acc.n < 2:
        raise GanopsError(f"{value}: need at least 2 images for statistics, got {acc.n}")
    return acc.stats(), acc.features()


def compare(stats_a, feats_a, stats_b, feats_b, extra: bool, bootstrap: int = 0) -> dict:
    """FID (and KID, precision/recall, bootstrap CI when both sides have features), keyed by metric name."""
    result = {FID_INCEPTION: frechet_distance(*stats_a, *stats_b), INCEPTION_SCORE: None, INCEPTION_SCORE_NOTE: INCEPTION_SCORE_TEXT}
    if extra and len(feats_a) > 3 and len(feats_b) > 3:
        result.update({metric_name(k, INCEPTION): v for k, v in kid(feats_a, feats_b, subsets=50).items()})
        result.update({metric_name(k, INCEPTION): v for k, v in precision_recall(feats_a, feats_b).items()})
    if bootstrap and len(feats_a) > 1 and len(feats_b) > 1:
        result.update({metric_name(k, INCEPTION): v for k, v in bootstrap_fid(feats_a, feats_b, rounds=bootstrap).items()})
    return result


def stats_cache_path(cache_dir: Path, dataset_key: str, data_root: Path, extractor) -> Path:
    return cache_dir / f"{dataset_key}-{extractor.tag}-{len(list_image_files(data_root))}.npz"


def reference_stats_cached(cache_dir: Path, dataset_md5: str, data_root: Path, extractor, keep: int, progress=None):
    """Inception statistics of a dataset version, computed once per (md5, extractor, image count) and reused."""
    path = stats_cache_path(cache_dir, dataset_md5, data_root, extractor)
    feats_path = path.with_suffix(".features.npy")
    if path.is_file() and feats_path.is_file():
        return load_stats(path), np.load(feats_path, allow_pickle=False), path
    acc = accumulate(extractor, folder_batches(data_root, extractor.batch_size), keep, progress)
    if acc.n < 2:
        raise GanopsError(f"{data_root}: need at least 2 images for statistics, got {acc.n}")
    stats, features = acc.stats(), acc.features()
    replace_file(lambda tmp: np.save(tmp, features), feats_path)  # both written whole; the statistics, checked first, last
    save_stats(path, *stats, dataset_md5=dataset_md5, extractor=extractor.tag, images=acc.n)
    return stats, features, path


def fid_between(
    a: str,
    b: str,
    project_dir: Path,
    cache_dir: Path,
    num_samples: int,
    batch_size: int,
    extra: bool,
    keep: int,
    bootstrap: int,
    weights: str | None,
    seed: int,
    save_a: Path | None = None,
    precision: str | None = None,
) -> dict:
    """`ganops fid A B`: the standard Inception FID (and with `extra` KID and precision/recall, with `bootstrap`
    an interval) between two sources, each a folder, an .npz of statistics or a registered model."""
    extractor = EXTRACTORS[INCEPTION](ExtractorInputs(cache_dir, batch_size, weights=weights, precision=precision or FP32))
    keep_n = keep if (extra or bootstrap) else 0
    stats_dir = cache_dir / "stats"
    with ExitStack() as stack:
        (ka, va), (kb, vb) = resolve_source(a, project_dir, stack), resolve_source(b, project_dir, stack)
        sizes = [source_size(ka, va, num_samples), source_size(kb, vb, num_samples)]
        cached = [
            weights is None and k == "folder" and stats_cache_path(stats_dir, folder_key(v, keep_n), v, extractor).is_file()
            for k, v in ((ka, va), (kb, vb))
        ]
        print(fid_plan([("A", a, sizes[0]), ("B", b, sizes[1])], extractor, cached), file=sys.stderr, flush=True)
        todo = sum(n for n, hit in zip(sizes, cached, strict=True) if not hit)
        progress = progress_bar(todo, label="fid images", unit="image", stderr=True) if todo else None
        sa, fa = source_stats(ka, va, extractor, num_samples, seed, keep_n, stats_dir if weights is None else None, progress)
        sb, fb = source_stats(kb, vb, extractor, num_samples, seed + 1, keep_n, stats_dir if weights is None else None, progress)
        if progress is not None:
            progress.close()
    if save_a is not None:
        save_stats(save_a, *sa, source=a, extractor=extractor.tag)
    return compare(sa, fa, sb, fb, extra, bootstrap)
