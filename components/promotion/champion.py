"""The champion, re-scored on this run's data with this run's extractor and latents, so the gate compares like
with like; and the check that a new config can compete with it at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from components.config import EvaluateConfig
from components.core.errors import ConfigError
from components.core.names import CHAMPION
from components.evaluation.evaluate import Scores, evaluate_generator, paired_difference
from components.registry.models import download_weights, version_by_alias
from components.training.weights import read_metadata


@dataclass(frozen=True)
class ChampionScores:
    version: str
    scores: Scores
    paired: dict[str, float] = field(default_factory=dict)  # candidate minus champion (fid_diff_domain, interval)


def score_champion(
    mlc,
    model_name: str,
    candidate: Path,
    data_root: Path,
    labels: list[str],
    dataset_md5: str,
    cfg: EvaluateConfig,
    cache_dir: Path,
    seed: int,
) -> ChampionScores | None:
    """The champion's scores on this dataset and the paired bootstrap of the `candidate` weights against it, or
    None when the model has no champion yet."""
    champion = version_by_alias(mlc, model_name, CHAMPION)
    if champion is None:
        return None
    with download_weights(champion) as weights:
        return ChampionScores(
            str(champion.version),
            evaluate_generator(weights, data_root, labels, dataset_md5, cfg, cache_dir, seed),
            paired_difference(candidate, weights, data_root, labels, dataset_md5, cfg, cache_dir, seed),
        )


def check_champion_shape(mlc, model_name: str, image_shape: tuple[int, int, int] | None) -> None:
    """Raise ConfigError, before any training, when `model_name`'s champion makes images of another shape than
    the dataset's (channels, height, width): the new version could never be compared with it."""
    champion = version_by_alias(mlc, model_name, CHAMPION)
    if champion is None or image_shape is None:
        return
    with download_weights(champion) as weights:
        spec, _ = read_metadata(weights)
    if spec.image_shape != tuple(image_shape):
        raise ConfigError(
            f"registry.model_name {model_name!r}: its champion (version {champion.version}) makes "
            f"{'x'.join(map(str, spec.image_shape))} images but this dataset has "
            f"{'x'.join(map(str, image_shape))}; choose another registry.model_name for this dataset"
        )
