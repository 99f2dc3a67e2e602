"""MODEL_CARD.md of an export: what the generator is, which data and code made it, how it scored (with intervals),
what the gate decided, a sample grid, and what it is and is not for. A pure function of plain values; the export
writes it and hashes it with the other files."""

from __future__ import annotations

import math

from components.core.names import (
    CHAMPION_METRIC_PREFIX,
    FID,
    PAIRED_DIFF,
    TAG_CODE_DIRTY,
    TAG_CODE_GIT_REV,
    TAG_DATA_GIT_REV,
    TAG_DATASET_MD5,
    TAG_DATASET_PATH,
    TAG_RUN_ID,
    TAG_VALIDATION,
    TAG_VALIDATION_IMAGES,
    interval_names,
)

LINEAGE_ROWS = (
    ("dataset md5 (DVC)", TAG_DATASET_MD5),
    ("dataset path", TAG_DATASET_PATH),
    ("data revision (git)", TAG_DATA_GIT_REV),
    ("code revision (git)", TAG_CODE_GIT_REV),
    ("code had uncommitted changes", TAG_CODE_DIRTY),
    ("validation passed", TAG_VALIDATION),
    ("images validated", TAG_VALIDATION_IMAGES),
    ("MLflow run", TAG_RUN_ID),
)


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else str(value)


def metrics_table(metrics: dict[str, float]) -> list[str]:
    """FID metrics with their bootstrap 95% interval, then the rest (champion re-scores and paired differences left
    out: they describe another model)."""
    rows = ["| metric | value | 95% interval |", "|---|---|---|"]
    bounds = {name for m in metrics if m.startswith(FID + "_") for name in interval_names(m)}
    for name in sorted(metrics):
        if name in bounds or name.startswith((CHAMPION_METRIC_PREFIX, PAIRED_DIFF)):
            continue
        low, high = interval_names(name) if name.startswith(FID + "_") else ("", "")
        interval = f"{_number(metrics[low])} - {_number(metrics[high])}" if low in metrics and high in metrics else ""
        rows.append(f"| {name} | {_number(metrics[name])} | {interval} |")
    return rows


def _decision_lines(decision: dict | None) -> list[str]:
    """The gate's verdict and every rule's result, as markdown."""
    if not decision:
        return ["No gate decision is recorded for this version."]
    lines = [
        f"Verdict: **{decision.get('verdict', 'unknown')}**"
        + (
            " (all rules passed)."
            if decision.get("promote")
            else (": " + "; ".join(decision["reasons"]) if decision.get("reasons") else ".")
        ),
        "",
        "| rule | passed | value | threshold | message |",
        "|---|---|---|---|---|",
    ]
    return lines + [
        f"| {r['name']} | {'yes' if r['passed'] else 'no'} | {_number(r.get('value'))} | {_number(r.get('threshold'))} "
        f"| {r.get('message', '')} |"
        for r in decision.get("rules", [])
    ]


def model_card(manifest: dict, metrics: dict[str, float], decision: dict | None, samples_file: str) -> str:
    """The card's markdown for an export described by `manifest` (its generator, input, labels and lineage)."""
    g, lineage = manifest["generator"], manifest.get("lineage", {})
    channels, size = g["channels"], g["image_size"]
    labels = manifest.get("labels") or []
    lines = [
        f"# {manifest['model_name']} version {manifest['model_version']}",
        "",
        f"A {g['arch']} generator: {g['z_dim']}-d standard normal latents"
        + (f" and a class label ({len(labels)} classes: {', '.join(labels)})" if labels else "")
        + f" in, {channels}x{size}x{size} images in [-1, 1] out. Exported as TorchScript and ONNX, both checked "
        "against PyTorch on the golden latents in `golden.safetensors`.",
        "",
        f"![samples of the golden latents]({samples_file})",
        "",
        "## Lineage",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {label} | {lineage[key]} |" for label, key in LINEAGE_ROWS if key in lineage]
    lines += [
        "",
        "## Metrics",
        "",
        "Measured by the training run on its own dataset version (the domain extractor is a "
        "classifier trained on that data; the Inception metrics, when present, use the standard FID network).",
        "",
    ]
    lines += metrics_table(metrics) if metrics else ["No metrics were recorded."]
    lines += ["", "## Gate decision", "", *_decision_lines(decision)]
    lines += [
        "",
        "## Intended use",
        "",
        "Sampling images like the training set's, for previews, data augmentation and rebalancing experiments "
        "whose benefit is measured on held-out real data.",
        "",
        "## Limitations",
        "",
        f"- It reproduces the training data's distribution at {size}x{size}, including its biases and gaps; it knows nothing outside it.",
        "- FID here is measured against the training data, not a held-out set, and on the sample size the run "
        "used; compare versions only under the same evaluation settings (the gate does).",
        "- Generated images are not real observations: do not use them as evidence, or as test data for models trained on them.",
    ]
    return "\n".join(lines) + "\n"
