"""Data validation: a per-image manifest checked by a Great Expectations (1.x) suite built from the config.

`build_manifest` reads every file once (hash, decode, size, channels, label). `build_suite` turns the config
into expectations. `run_suite` runs them with GX; `summarize` turns GX's result into a plain report that names
every offending file and the rule it broke. A failed report stops the pipeline before training.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
from PIL import Image

from components.config import ValidationConfig
from components.data import list_image_files

# Manifest columns: one spelling everywhere.
PATH, SHA256, DECODES, ERROR, FORMAT, WIDTH, HEIGHT, MODE, CHANNELS, LABEL, BYTES = (
    "path", "sha256", "decodes", "error", "format", "width", "height", "mode", "channels", "label", "bytes",
)
MANIFEST_COLUMNS = [PATH, SHA256, DECODES, ERROR, FORMAT, WIDTH, HEIGHT, MODE, CHANNELS, LABEL, BYTES]

# Human names for the rules, keyed by (expectation type, column).
RULES = {
    ("expect_table_row_count_to_be_between", None): "image count within bounds",
    ("expect_column_values_to_be_in_set", DECODES): "every file decodes as an image",
    ("expect_column_values_to_be_in_set", WIDTH): "width equals the configured image size",
    ("expect_column_values_to_be_in_set", HEIGHT): "height equals the configured image size",
    ("expect_column_unique_value_count_to_be_between", WIDTH): "one image width",
    ("expect_column_unique_value_count_to_be_between", HEIGHT): "one image height",
    ("expect_column_values_to_be_in_set", CHANNELS): "channel count equals the configured channels",
    ("expect_column_unique_value_count_to_be_between", CHANNELS): "one channel count",
    ("expect_column_values_to_be_in_set", LABEL): "label folder in the allowed set",
    ("expect_column_values_to_not_be_null", LABEL): "every file sits inside a label folder",
    ("expect_column_values_to_be_unique", SHA256): "no duplicate image content",
}


def inspect_image(root: Path, rel: Path) -> dict:
    """One manifest row: what a file is, read without trusting its name."""
    path = root / rel
    data = path.read_bytes()
    row = {
        PATH: rel.as_posix(),
        SHA256: hashlib.sha256(data).hexdigest(),
        DECODES: False,
        ERROR: "",
        FORMAT: None,
        WIDTH: None,
        HEIGHT: None,
        MODE: None,
        CHANNELS: None,
        LABEL: rel.parts[0] if len(rel.parts) > 1 else None,
        BYTES: len(data),
    }
    try:
        with Image.open(path) as im:
            im.load()  # a truncated or corrupt file fails here, not at open
            row.update({FORMAT: im.format, WIDTH: im.width, HEIGHT: im.height, MODE: im.mode, CHANNELS: len(im.getbands())})
            row[DECODES] = True
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        row[ERROR] = f"{type(e).__name__}: {e}"
    return row


def build_manifest(root: Path) -> pd.DataFrame:
    """A DataFrame with one row per file under `root` (hidden files skipped), sorted by path."""
    rows = [inspect_image(root, rel) for rel in list_image_files(root)]
    frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return frame.astype({WIDTH: "Int64", HEIGHT: "Int64", CHANNELS: "Int64"})


def build_suite(cfg: ValidationConfig, name: str = "ganops-images"):
    """The expectation suite the config describes (a gx.ExpectationSuite, not yet added to a context)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=name)
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_images, max_value=cfg.max_images))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=DECODES, value_set=[True]))
    for column in (WIDTH, HEIGHT, CHANNELS):
        suite.add_expectation(gxe.ExpectColumnUniqueValueCountToBeBetween(column=column, min_value=0, max_value=1))
    if cfg.image_size is not None:
        for column in (WIDTH, HEIGHT):
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[cfg.image_size]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=CHANNELS, value_set=[cfg.channels]))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=LABEL))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(cfg.labels)))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=SHA256))
    return suite


def run_suite(manifest: pd.DataFrame, cfg: ValidationConfig) -> dict:
    """Validate the manifest with GX in an ephemeral context; returns GX's result as a JSON-able dict."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # one bar per metric floods the log
    batch = context.data_sources.add_pandas("manifest").add_dataframe_asset("images").add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(build_suite(cfg))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="images", data=batch, suite=suite))
    # Rows that fail a column rule are reported by path; decode failures keep their error text.
    frame = manifest.copy()
    frame[DECODES] = frame[DECODES].astype(bool)
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [PATH]},
    )
    return result.to_json_dict()


def summarize(result: dict, manifest: pd.DataFrame, max_files: int = 20) -> dict:
    """Turn a GX result into {'success', 'images', 'failures': [{'rule', 'files', 'observed'}]}."""
    errors = dict(zip(manifest[PATH], manifest[ERROR]))
    failures = []
    for item in result.get("results", []):
        if item.get("success"):
            continue
        config = item.get("expectation_config", {})
        kind, column = config.get("type"), (config.get("kwargs") or {}).get("column")
        rule = RULES.get((kind, column), f"{kind}({column})")
        res = item.get("result") or {}
        files = sorted({row[PATH] for row in res.get("unexpected_index_list") or [] if PATH in row})
        described = [f"{f} ({errors[f]})" if errors.get(f) else f for f in files]
        failures.append({
            "rule": rule,
            "expectation": kind,
            "column": column,
            "observed": res.get("observed_value"),
            "files": described[:max_files],
            "file_count": len(files),
        })
    return {"success": bool(result.get("success")) and not failures, "images": int(len(manifest)), "failures": failures}


def format_failures(report: dict) -> str:
    """One readable line per failed rule, naming the files."""
    lines = []
    for f in report["failures"]:
        what = ", ".join(f["files"]) if f["files"] else f"observed {f['observed']}"
        more = f" and {f['file_count'] - len(f['files'])} more" if f["file_count"] > len(f["files"]) else ""
        lines.append(f"rule '{f['rule']}' broken by {what}{more}")
    return "; ".join(lines)


def validate_folder(root: Path, cfg: ValidationConfig) -> tuple[dict, pd.DataFrame]:
    """Build the manifest for `root` and validate it. Returns (report, manifest)."""
    manifest = build_manifest(root)
    return summarize(run_suite(manifest, cfg), manifest), manifest
