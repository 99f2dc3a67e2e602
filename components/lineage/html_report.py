"""`ganops report MODEL --out report.html`: one self-contained HTML page about a registered model: the champion
over time (from the promotion ledger), the gate metric per version with its 95% interval and KID (a plot), the
sample grids of recent versions side by side, each gate decision's rules, the champion's audit, and the validation
summary and drift of each version's data. Images are embedded (data: URIs): the file can be mailed or archived.

`gather` reads (registry, run artifacts, ledger, audit); `render` is a pure function of what was read.
"""

from __future__ import annotations

import base64
import html
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from components.core.atomic import write_text
from components.core.errors import GanopsError
from components.core.names import (
    ARTIFACT_SAMPLES,
    ARTIFACT_VALIDATION_REPORT,
    CHAMPION,
    TAG_DATASET_MD5,
    TAG_GATE,
    TAG_GATE_RULES,
    TAG_WITHDRAWN,
    interval_names,
)
from components.lineage.audit import Audit, audit_version
from components.promotion.actions import history, version_config
from components.registry.models import all_versions, current_aliases, require_model


@dataclass
class VersionFacts:
    version: str
    aliases: list[str]
    gate: str | None
    withdrawn: str | None
    dataset_md5: str | None
    metrics: dict[str, float]
    rules: list[dict]
    validation: dict | None
    samples_png: bytes | None = None


@dataclass
class ReportData:
    model: str
    gate_metric: str
    versions: list[VersionFacts]  # newest first
    ledger: list = field(default_factory=list)  # promotion ledger entries, oldest first
    ledger_problems: list[str] = field(default_factory=list)
    audit: Audit | None = None
    champion: str | None = None


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _last_samples(mlc, run_id: str, dest: Path) -> bytes | None:
    grids = sorted(a.path for a in mlc.list_artifacts(run_id, ARTIFACT_SAMPLES) if a.path.endswith(".png"))
    return Path(mlc.download_artifacts(run_id, grids[-1], str(dest))).read_bytes() if grids else None


def _validation(mlc, run_id: str, dest: Path) -> dict | None:
    try:
        return json.loads(Path(mlc.download_artifacts(run_id, ARTIFACT_VALIDATION_REPORT, str(dest))).read_text())
    except Exception:  # a run without a report (MLflow raises its own types)
        return None


def _rules(text: str | None) -> list[dict]:
    """The gate rules recorded on a version; none when the tag is missing or not the JSON list ganops writes."""
    try:
        rules = json.loads(text or "[]")
    except ValueError:
        return []
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


def gather(mlc, project_dir: Path, model: str, gate_metric: str, recent: int = 6) -> ReportData:
    """Everything the page shows, for the `recent` newest versions (sample grids for the 3 newest)."""
    aliases = current_aliases(mlc, model)
    chain, problems = history(mlc, model)
    newest = sorted(all_versions(mlc, model), key=lambda v: -int(v.version))[:recent]
    facts = []
    with tempfile.TemporaryDirectory(prefix="ganops-report-") as tmp:
        for i, mv in enumerate(newest):
            tags, version = dict(mv.tags or {}), str(mv.version)
            run = mlc.get_run(mv.run_id)
            facts.append(
                VersionFacts(
                    version,
                    sorted(a for a, v in aliases.items() if v == version),
                    tags.get(TAG_GATE),
                    tags.get(TAG_WITHDRAWN),
                    tags.get(TAG_DATASET_MD5),
                    dict(run.data.metrics),
                    _rules(tags.get(TAG_GATE_RULES)),
                    _validation(mlc, mv.run_id, Path(tmp) / version),
                    _last_samples(mlc, mv.run_id, Path(tmp) / version) if i < 3 else None,
                )
            )
    audit = audit_version(mlc, project_dir, f"{model}@{CHAMPION}") if CHAMPION in aliases else None
    return ReportData(model, gate_metric, facts, chain.entries, problems, audit, aliases.get(CHAMPION))


def metrics_plot(data: ReportData) -> bytes:
    """The gate metric per version with its interval, KID beside it, and the champion over the ledger's entries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = sorted((int(v.version), v) for v in data.versions if data.gate_metric in v.metrics)
    low, high = interval_names(data.gate_metric)
    fig, (ax, timeline) = plt.subplots(1, 2, figsize=(11, 3.6), dpi=100)
    xs = [x for x, _ in rows]
    ys = [v.metrics[data.gate_metric] for _, v in rows]
    errors = [
        [y - v.metrics.get(low, y) for (_, v), y in zip(rows, ys, strict=True)],
        [v.metrics.get(high, y) - y for (_, v), y in zip(rows, ys, strict=True)],
    ]
    ax.errorbar(xs, ys, yerr=errors, fmt="o-", capsize=4, label=f"{data.gate_metric} (95% interval)")
    for x, v in rows:
        if CHAMPION in v.aliases:
            ax.annotate("champion", (x, v.metrics[data.gate_metric]), textcoords="offset points", xytext=(0, 8), ha="center")
    ax.set(xlabel="version", ylabel=data.gate_metric, title=f"{data.model}: {data.gate_metric} per version")
    kid = [(x, value) for x, v in rows for key, value in v.metrics.items() if key.startswith("kid_") and "std" not in key][: len(rows)]
    if kid:
        twin = ax.twinx()
        twin.plot([x for x, _ in kid], [k for _, k in kid], "s--", color="tab:orange", label="KID")
        twin.set_ylabel("KID")
    ax.legend(loc="upper left", fontsize=8)
    steps = [(e.seq, int(e.aliases_after[CHAMPION])) for e in data.ledger if e.aliases_after.get(CHAMPION)]
    if steps:
        timeline.step([s for s, _ in steps], [c for _, c in steps], where="post", marker="o")
    timeline.set(xlabel="ledger entry", ylabel="champion version", title="champion over time")
    for axis in (ax.xaxis, timeline.xaxis, timeline.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}
th{background:#f2f2f2}.PASS,.promote,.passed{color:#16723a}.FAIL,.reject,.failed{color:#b00020;font-weight:bold}
.WARN,.SKIP{color:#8a6100}.grids{display:flex;gap:16px;flex-wrap:wrap}.grids figure{margin:0}
.grids img{width:256px;image-rendering:pixelated;border:1px solid #ccc}h2{margin-top:28px}"""
# Marks the page once the browser has decoded every image (read by the report's browser test and by anyone curious).
ONLOAD = """<script>window.addEventListener("load",()=>{const i=[...document.images];
document.body.dataset.images=i.length;document.body.dataset.broken=i.filter(x=>!x.complete||x.naturalWidth===0).length;});</script>"""


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _status(text: str | None) -> str:
    text = str(text or "-")
    return f'<span class="{html.escape(text.split()[0])}">{html.escape(text)}</span>'


def _metric_cell(v: VersionFacts, metric: str) -> str:
    low, high = interval_names(metric)
    if metric not in v.metrics:
        return "-"
    interval = f" [{v.metrics[low]:.3f}, {v.metrics[high]:.3f}]" if low in v.metrics and high in v.metrics else ""
    return f"{v.metrics[metric]:.4f}{interval}"


def _versions_section(data: ReportData) -> str:
    e = html.escape
    return "<h2>Versions</h2>" + _table(
        ["version", "aliases", "gate", f"{data.gate_metric} [95% interval]", "dataset md5", "withdrawn"],
        [
            [
                e(v.version),
                e(", ".join(v.aliases) or "-"),
                _status(v.gate),
                _metric_cell(v, data.gate_metric),
                f"<code>{e(v.dataset_md5 or '-')}</code>",
                e(v.withdrawn or ""),
            ]
            for v in data.versions
        ],
    )


def _samples_section(data: ReportData) -> list[str]:
    e = html.escape
    grids = [(v, v.samples_png) for v in data.versions if v.samples_png]
    if not grids:
        return []
    return [
        "<h2>Samples of recent versions</h2><div class=grids>"
        + "".join(
            f'<figure><img alt="samples of version {e(v.version)}" src="{_data_uri(png)}">'
            f"<figcaption>version {e(v.version)} {e(', '.join(v.aliases))}</figcaption></figure>"
            for v, png in grids
        )
        + "</div>"
    ]


def _audit_section(data: ReportData) -> list[str]:
    e = html.escape
    if not data.audit:
        return []
    return [
        f"<h2>Audit of the champion (version {e(data.audit.version)})</h2>"
        + _table(
            ["#", "link", "status", "evidence"],
            [[str(link.number), e(link.name), _status(link.status), e(link.evidence)] for link in data.audit.links],
        )
    ]


def _rules_sections(data: ReportData) -> list[str]:
    e = html.escape
    return [
        f"<h3>Gate rules of version {e(v.version)}: {_status(v.gate)}</h3>"
        + _table(
            ["rule", "result", "message"],
            [[e(str(r.get("name"))), _status("PASS" if r.get("passed") else "FAIL"), e(str(r.get("message", "")))] for r in v.rules],
        )
        for v in data.versions
        if v.rules
    ]


def _ledger_section(data: ReportData) -> str:
    e = html.escape
    return (
        "<h2>Promotion ledger</h2>"
        + "".join(f"<p class=FAIL>{e(p)}</p>" for p in data.ledger_problems)
        + _table(
            ["#", "time", "action", "version", "by", "champion after", "reason"],
            [
                [str(x.seq), e(x.time), e(x.action), e(x.version), e(x.actor), e(x.aliases_after.get(CHAMPION, "-")), e(x.reason)]
                for x in reversed(data.ledger)
            ],
        )
    )


def _validation_section(data: ReportData) -> str:
    e = html.escape
    return "<h2>Validation and drift</h2>" + _table(
        ["version", "dataset md5", "validation", "images", "failed rules", "drift"],
        [
            [
                e(v.version),
                f"<code>{e(v.dataset_md5 or '-')}</code>",
                _status("passed" if (v.validation or {}).get("success") else "failed" if v.validation else None),
                e(str((v.validation or {}).get("images", "-"))),
                e("; ".join(f.get("rule", "") for f in (v.validation or {}).get("failures", [])) or "-"),
                e("; ".join(((v.validation or {}).get("drift") or {}).get("findings", [])) or "none"),
            ]
            for v in data.versions
        ],
    )


def _sections(data: ReportData) -> list[str]:
    return [
        _versions_section(data),
        *_samples_section(data),
        *_audit_section(data),
        *_rules_sections(data),
        _ledger_section(data),
        _validation_section(data),
    ]


def render(data: ReportData, plot_png: bytes, generated: str) -> str:
    """The page: pure of what `gather` read and the plot."""
    champion = data.champion
    audit = data.audit.first_failure if data.audit else None
    verdict = (
        "no champion"
        if data.audit is None
        else f"audit FAILED at link {audit.number} ({audit.name})"
        if audit
        else "audit: every link verified"
    )
    return "\n".join(
        [
            "<!doctype html><html lang=en><head><meta charset=utf-8>",
            f"<title>ganops report: {html.escape(data.model)}</title><style>{STYLE}</style>{ONLOAD}</head><body>",
            f"<h1>{html.escape(data.model)}</h1><p>champion: version {html.escape(champion or 'none')} &middot; "
            f"<span class={'FAIL' if audit else 'PASS'}>{html.escape(verdict)}</span> &middot; generated {html.escape(generated)}</p>",
            f'<img alt="{html.escape(data.gate_metric)} per version and champion over time" src="{_data_uri(plot_png)}">',
            *_sections(data),
            "</body></html>",
        ]
    )


def write_report(mlc, project_dir: Path, model: str, out: Path, gate_metric: str | None = None) -> ReportData:
    """Gather, plot, render and write the page atomically; the metric defaults to the newest version's gate metric."""
    import time

    require_model(mlc, model)
    if gate_metric is None:
        newest = max(all_versions(mlc, model), key=lambda v: int(v.version), default=None)
        if newest is None:
            raise GanopsError(f"model {model!r} has no versions yet")
        gate_metric = version_config(mlc, model, str(newest.version)).gate.metric
    data = gather(mlc, project_dir, model, gate_metric)
    write_text(out, render(data, metrics_plot(data), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    return data
