"""The manifest checked by a Great Expectations 1.x suite built from the config.

`build_suite` turns the config into expectations; `run_suite` runs them through a Checkpoint of a persistent
(file) GX context when given a folder for it, so results are kept and Data Docs (HTML) are written, or in an
ephemeral context otherwise; `summarize` turns GX's result into the failures of a report, naming every
offending file and the rule it broke.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pandas as pd

from components.config import ValidationConfig
from components.core.atomic import file_lock
from components.core.names import OVERSAMPLED_PREFIX, SYNTHETIC_PREFIX
from components.validation.manifest import CHANNELS, DECODES, ERROR, FORMAT_OK, HEIGHT, INSIDE, LABEL, MEAN, MODE, PATH, SHA256, STD, WIDTH
from components.validation.results import RuleFailure

LABEL_FRACTION, SYNTHETIC_FRACTION = "label_fraction", "synthetic_fraction"
UNIQUE_CONTENT = "unique_content"  # sha256, blank for a declared repeat (oversampled-*): the duplicate rule skips it
SUITE, ASSET, DEFINITION, CHECKPOINT, SITE = "ganops-images", "images", "ganops-images", "ganops-images", "local_site"

# Human names for the rules, keyed by (expectation type, column).
RULES = {
    ("expect_table_row_count_to_be_between", None): "image count within bounds",
    ("expect_column_values_to_be_in_set", INSIDE): "every file lies inside the dataset root",
    ("expect_column_values_to_be_in_set", DECODES): "every file decodes as an image (within the pixel limit)",
    ("expect_column_values_to_be_in_set", FORMAT_OK): "file content matches its extension",
    ("expect_column_values_to_be_in_set", WIDTH): "width equals the configured image size",
    ("expect_column_values_to_be_in_set", HEIGHT): "height equals the configured image size",
    ("expect_column_unique_value_count_to_be_between", WIDTH): "one image width",
    ("expect_column_unique_value_count_to_be_between", HEIGHT): "one image height",
    ("expect_column_values_to_be_in_set", CHANNELS): "channel count equals the configured channels",
    ("expect_column_unique_value_count_to_be_between", CHANNELS): "one channel count",
    ("expect_column_values_to_be_in_set", MODE): "image mode matches the configured channels",
    ("expect_column_values_to_not_be_null", LABEL): "every file sits inside a label folder",
    ("expect_column_values_to_be_in_set", LABEL): "label folder in the allowed set",
    ("expect_column_distinct_values_to_contain_set", LABEL): "every allowed label is present",
    ("expect_column_values_to_be_between", LABEL_FRACTION): "class proportions within bounds",
    ("expect_column_values_to_be_between", SYNTHETIC_FRACTION): "synthetic share of each class within the bound",
    ("expect_column_values_to_be_unique", UNIQUE_CONTENT): "no duplicate image content",
    ("expect_column_mean_to_be_between", MEAN): "mean pixel value within bounds",
    ("expect_column_values_to_be_between", STD): "pixel standard deviation above the minimum (no blank images)",
}


def build_suite(cfg: ValidationConfig, name: str = SUITE):
    """The expectation suite the config describes (a gx.ExpectationSuite, not yet added to a context)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=name)
    add = suite.add_expectation
    add(gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_images, max_value=cfg.max_images))
    add(gxe.ExpectColumnValuesToBeInSet(column=INSIDE, value_set=[True]))
    add(gxe.ExpectColumnValuesToBeInSet(column=DECODES, value_set=[True]))
    add(gxe.ExpectColumnValuesToBeInSet(column=FORMAT_OK, value_set=[True]))
    for column in (WIDTH, HEIGHT, CHANNELS):
        add(gxe.ExpectColumnUniqueValueCountToBeBetween(column=column, min_value=0, max_value=1))
    if cfg.image_size is not None:
        for column in (WIDTH, HEIGHT):
            add(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[cfg.image_size]))
    add(gxe.ExpectColumnValuesToBeInSet(column=CHANNELS, value_set=[cfg.channels]))
    add(gxe.ExpectColumnValuesToBeInSet(column=MODE, value_set=["L"] if cfg.channels == 1 else ["RGB"]))
    add(gxe.ExpectColumnValuesToNotBeNull(column=LABEL))
    add(gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(cfg.labels)))
    balanced = cfg.profile == "balanced"  # imbalanced: no proportion bounds, but every label still present
    if cfg.min_class_fraction > 0 or not balanced:
        add(gxe.ExpectColumnDistinctValuesToContainSet(column=LABEL, value_set=list(cfg.labels)))
    if balanced:
        add(gxe.ExpectColumnValuesToBeBetween(column=LABEL_FRACTION, min_value=cfg.min_class_fraction, max_value=cfg.max_class_fraction))
    if cfg.max_synthetic_fraction < 1:
        add(gxe.ExpectColumnValuesToBeBetween(column=SYNTHETIC_FRACTION, min_value=0.0, max_value=cfg.max_synthetic_fraction))
    add(gxe.ExpectColumnValuesToBeUnique(column=UNIQUE_CONTENT))
    add(gxe.ExpectColumnMeanToBeBetween(column=MEAN, min_value=cfg.pixel_mean_range[0], max_value=cfg.pixel_mean_range[1]))
    add(gxe.ExpectColumnValuesToBeBetween(column=STD, min_value=cfg.min_pixel_std))
    return suite


def with_label_fractions(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest plus each row's class fraction and its class's synthetic share (files named synthetic-*), so
    class proportions are columns GX can check; and the content hash of every file that is not a declared repeat."""
    frame = manifest.copy()
    repeat = frame[PATH].map(lambda p: PurePosixPath(p).name.startswith(OVERSAMPLED_PREFIX))
    frame[UNIQUE_CONTENT] = frame[SHA256].where(~repeat, None)
    frame[LABEL_FRACTION] = frame[LABEL].map(frame[LABEL].value_counts(normalize=True)).astype(float)
    synthetic = frame[PATH].map(lambda p: PurePosixPath(p).name.startswith(SYNTHETIC_PREFIX))
    frame[SYNTHETIC_FRACTION] = frame[LABEL].map(synthetic.groupby(frame[LABEL]).mean()).astype(float).fillna(0.0)
    return frame


def _context(gx_root: Path | None):
    import great_expectations as gx
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context: AbstractDataContext
    if gx_root is None:
        context = gx.get_context(mode="ephemeral")
    else:
        gx_root.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # one bar per metric floods the log
    return context


def run_suite(manifest: pd.DataFrame, cfg: ValidationConfig, gx_root: Path | None = None) -> tuple[dict, Path | None]:
    """Validate the manifest with GX; returns (GX's result as a dict, the Data Docs index or None).

    With `gx_root`, a persistent file context keeps the suite, a Checkpoint and every result, and the
    Checkpoint's action rebuilds the Data Docs site. GX rewrites its JSON store in place, so runs that share
    the folder take turns (a lock file beside it); two `ganops run`s at once once left the store unreadable.
    """
    if gx_root is None:
        return _run_suite(manifest, cfg, None)
    with file_lock(gx_root.parent / f".{gx_root.name}.lock"):
        return _run_suite(manifest, cfg, gx_root)


def _run_suite(manifest: pd.DataFrame, cfg: ValidationConfig, gx_root: Path | None) -> tuple[dict, Path | None]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    context = _context(gx_root)
    source = context.data_sources.add_or_update_pandas("manifest")
    asset = next((a for a in source.assets if a.name == ASSET), None) or source.add_dataframe_asset(ASSET)
    batch = next((b for b in asset.batch_definitions if b.name == "all"), None) or asset.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add_or_update(build_suite(cfg))
    definition = context.validation_definitions.add_or_update(gx.ValidationDefinition(name=DEFINITION, data=batch, suite=suite))
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": [PATH]}
    frame = with_label_fractions(manifest)
    if gx_root is None:
        return definition.run(batch_parameters={"dataframe": frame}, result_format=result_format).to_json_dict(), None
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=CHECKPOINT,
            validation_definitions=[definition],
            result_format=result_format,
            actions=[UpdateDataDocsAction(name="data-docs", site_names=[SITE])],
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": frame})
    result = next(iter(outcome.run_results.values())).to_json_dict()
    docs = Path(context.root_directory) / "uncommitted" / "data_docs" / SITE / "index.html"
    return result, docs if docs.is_file() else None


def summarize(result: dict, manifest: pd.DataFrame, max_files: int = 20) -> list[RuleFailure]:
    """The failed expectations of a GX result as RuleFailures, each naming its files (with their manifest error)."""
    errors = dict(zip(manifest[PATH], manifest[ERROR], strict=True))
    failures = []
    for item in result.get("results", []):
        if item.get("success"):
            continue
        config = item.get("expectation_config", {})
        kind, column = config.get("type"), (config.get("kwargs") or {}).get("column")
        res = item.get("result") or {}
        files = sorted({row[PATH] for row in res.get("unexpected_index_list") or [] if PATH in row})
        described = [f"{f} ({errors[f]})" if errors.get(f) else f for f in files]
        failures.append(
            RuleFailure(
                rule=RULES.get((kind, column), f"{kind}({column})"),
                expectation=kind,
                column=column,
                observed=res.get("observed_value"),
                files=described[:max_files],
                file_count=len(files),
            )
        )
    if not result.get("success") and not failures:
        failures.append(RuleFailure(rule="Great Expectations reported a failure", expectation=None, column=None, observed=None))
    return failures
