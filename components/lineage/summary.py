"""What a person reads about one retrain: the lines `ganops run` prints, a markdown summary (model, decision, metrics with intervals, lineage,
the MLflow run link) and the validation rules as a table. Pure functions of the flow's summary and report."""

from __future__ import annotations

from pathlib import Path

from components.core.names import ARTIFACT_SAMPLES, FID_DOMAIN, FID_DOMAIN_REAL_SPLIT, interval_names
from components.promotion.gate import format_rules
from components.promotion.rules import RuleResult
from components.validation.results import ValidationReport

VERDICT_TITLES = {"promote": "promoted to champion", "reject": "not promoted", "await_approval": "awaiting approval"}


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run for a tracking server; the `mlflow ui` command for a local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"`mlflow ui --backend-store-uri {tracking_uri}` then run {run_id}"


def summary_markdown(summary: dict, link: str) -> str:
    """The retrain summary as markdown (a Prefect artifact on the flow run)."""
    metrics, decision, metric = summary["scores"]["metrics"], summary["decision"], summary["gate_metric"]
    low, high = interval_names(metric)
    interval = f" (95% interval {metrics[low]:.3f} to {metrics[high]:.3f})" if low in metrics and high in metrics else ""
    champion = summary.get("champion_before")
    lines = [
        f"# {summary['model_name']} version {summary['version']}: {VERDICT_TITLES[decision['verdict']]}",
        "",
        f"**{metric}** {metrics[metric]:.4f}{interval}"
        + (
            f"; the champion (version {champion['version']}) re-scored on the same data: {champion['metrics'][metric]:.4f}"
            if champion
            else ""
        ),
        "",
        "## Gate",
        *[f"- {reason}" for reason in decision["reasons"]],
        "",
        "## Metrics",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {key} | {value:.4f} |" for key, value in sorted(metrics.items())],
        "",
        "## Lineage",
        f"- dataset md5 `{summary['dataset']['md5']}` at `{summary['dataset']['path']}`, data.dvc revision "
        f"`{summary['dataset']['data_git_rev']}`, code revision `{summary['dataset']['code_git_rev']}`",
        f"- export: {summary['export'] or 'none'}",
        f"- MLflow run: {link}",
        f"- audit: `ganops lineage {summary['model_name']}@{summary['version']}`",
    ]
    return "\n".join(lines)


def validation_table(report: ValidationReport) -> list[dict]:
    """One row per broken rule (or one 'all rules passed' row), for a Prefect table artifact."""
    if not report.failures:
        return [{"rule": "all rules", "result": "passed", "files": "", "count": 0}]
    return [
        {"rule": f.rule, "result": "FAILED", "files": ", ".join(f.files) or str(f.observed), "count": f.file_count} for f in report.failures
    ]


def rules_table(results: list[RuleResult]) -> list[dict]:
    """One row per gate rule, for a Prefect table artifact."""
    return [
        {"rule": r.name, "result": "passed" if r.passed else "FAILED", "value": r.value, "threshold": r.threshold, "message": r.message}
        for r in results
    ]


def approval_markdown(model: str, version: str, decision, metrics: dict, champion: dict | None, metric: str, link: str) -> str:
    """What an approver reads: the rules, the candidate's metrics against the champion's, the samples and the commands."""
    keys = sorted(k for k in metrics if champion is None or k in champion)
    lines = [
        f"# {model} version {version} awaits approval",
        "",
        "It passed every gate rule; `gate.approval: required` keeps the champion until a person decides.",
        "",
        "## Rules",
        *[f"- {'passed' if r.passed else 'FAILED'} **{r.name}**: {r.message}" for r in decision.results],
        "",
        "## Metrics",
        "| metric | candidate | champion |",
        "| --- | --- | --- |",
        *[f"| {k} | {metrics[k]:.4f} | {champion[k]:.4f} |" if champion else f"| {k} | {metrics[k]:.4f} | - |" for k in keys],
        "",
        f"Sample grids: artifact folder `{ARTIFACT_SAMPLES}/` of the MLflow run: {link}",
        "",
        f"Approve: `ganops approve {model} {version} --reason TEXT`  ",
        f"Reject: `ganops reject {model} {version} --reason TEXT`",
    ]
    if metric in metrics:
        lines.insert(
            4,
            f"**{metric}** {metrics[metric]:.4f}"
            + (f" against the champion's {champion[metric]:.4f}" if champion and metric in champion else ""),
        )
        lines.insert(5, "")
    return "\n".join(lines)


def format_run_summary(summary: dict, exports: Path) -> str:
    """The lines `ganops run` prints after the flow: the version and its verdict, the gate metric, the export, the
    gate's rules, and where to look next."""
    uri, metrics, metric = summary["tracking_uri"], summary["scores"]["metrics"], summary["gate_metric"]
    verdict_key, model, version = summary["decision"]["verdict"], summary["model_name"], summary["version"]
    floor = f"; real-vs-real floor {metrics[FID_DOMAIN_REAL_SPLIT]:.3f}" if metric == FID_DOMAIN else ""
    verdict = {
        "promote": "promoted to champion",
        "reject": "challenger (not promoted)",
        "await_approval": f"candidate, awaiting approval (ganops approve {model} {version} --reason ...)",
    }[verdict_key]
    if summary["reused_version"]:
        then = {"promote": "promoted", "reject": "rejected", "await_approval": "awaiting approval"}[verdict_key]
        verdict = (
            f"registered before from the same data, settings and code ({then}"
            f" then); nothing new was {'trained or ' if summary['reused_training'] else ''}registered"
        )
    waiting = verdict_key == "await_approval"
    lines = [
        f"model     {model} version {version}: {verdict}",
        f"fid       {metrics[metric]:.3f} ({metric}{floor})",
        f"export    {summary['export'] or ('none yet: written when approved' if waiting else 'none (the gate did not promote this version)')}",
    ]
    if summary["decision"]["rules"]:
        lines.append("gate      " + format_rules([RuleResult(**r) for r in summary["decision"]["rules"]]).replace("\n", "\n          "))
    lines += [
        f"lineage   ganops lineage {model}@champion",
        f"mlflow ui mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else f"mlflow    {uri}",
        f"exports   {exports}",
    ]
    return "\n".join(lines)
