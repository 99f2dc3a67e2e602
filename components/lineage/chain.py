"""The lineage chain read back from the registry: export files -> model version -> training run -> dataset md5
and revisions -> validation result.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.core.names import (
    ARTIFACT_DATA_DOCS,
    ARTIFACT_VALIDATION_REPORT,
    SYNTHETIC_MANIFEST,
    TAG_CODE_DIRTY,
    TAG_CODE_GIT_REV,
    TAG_CONFIG_NAME,
    TAG_DATA_DIRTY,
    TAG_DATA_GIT_REV,
    TAG_DATASET_MD5,
    TAG_DATASET_PATH,
    TAG_EXPORT_DIR,
    TAG_EXPORT_URI,
    TAG_GATE,
    TAG_GATE_REASONS,
    TAG_VALIDATION,
    TAG_VALIDATION_IMAGES,
    TAG_WITHDRAWN,
)
from components.data.versioning import dataset_member
from components.lineage.synthetic import format_origin, parse_record, summary
from components.registry.models import current_aliases, parse_model_ref, resolve_version, versions_trained_on
from components.registry.tracking import client
from components.serving.export import verify_export
from components.serving.formats import MANIFEST


def _flag(text: str | None) -> bool | None:
    """A tag written from a Python bool ('True'/'False') as a JSON boolean; None when not recorded."""
    return {"True": True, "False": False}.get(text or "")


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def lineage_of(project_dir: Path, model: str) -> dict:
    """The chain for MODEL, MODEL@ALIAS or MODEL@VERSION (default: the champion) in the project's registry, with
    the generator behind the dataset's synthetic images when it has some."""
    name, ref = parse_model_ref(model)
    chain = resolve_lineage(client(project_dir), name, ref)
    chain["dataset"]["synthetic"] = synthetic_origin(project_dir, chain["dataset"]["md5"])
    return chain


def synthetic_origin(project_dir: Path, dataset_md5: str | None) -> dict | None:
    """The generator (and its seed and counts) behind dataset `dataset_md5`'s synthetic images, read from the DVC cache."""
    return summary(parse_record(dataset_member(project_dir, dataset_md5 or "", SYNTHETIC_MANIFEST)))


def data_lineage(project_dir: Path, dataset_md5: str) -> dict:
    """Reverse lineage of a dataset: every model version trained on it, and the generator of its synthetic images."""
    return {
        "dataset_md5": dataset_md5,
        "versions": trained_on(client(project_dir), dataset_md5),
        "synthetic": synthetic_origin(project_dir, dataset_md5),
    }


def resolve_lineage(mlc, model_name: str, ref: str | None) -> dict:
    """Read the chain for `model_name@ref` from the registry, the run and the export folder (hashes re-checked)."""
    mv = resolve_version(mlc, model_name, ref)
    run = mlc.get_run(mv.run_id)
    tags = dict(mv.tags)
    validation = None
    try:
        local = mlc.download_artifacts(mv.run_id, ARTIFACT_VALIDATION_REPORT)
        validation = json.loads(Path(local).read_text())
    except Exception:  # older or failed runs may lack the report; the tag still says pass/fail
        validation = None
    folder = Path(tags[TAG_EXPORT_DIR]) if TAG_EXPORT_DIR in tags else None
    export = {"path": str(folder) if folder else None, "exists": folder is not None and (folder / MANIFEST).is_file()}
    if folder is not None and export["exists"]:
        checked = verify_export(folder)
        export.update({"files": checked["files"], "hashes_ok": checked["ok"]})
    return {
        "export": export,
        "model": {
            "name": model_name,
            "version": str(mv.version),
            "aliases": list(getattr(mv, "aliases", []) or []),
            "gate": tags.get(TAG_GATE),
            "gate_reasons": json.loads(tags.get(TAG_GATE_REASONS, "[]")),
            "source": mv.source,
        },
        "run": {
            "id": run.info.run_id,
            "status": run.info.status,
            "experiment_id": run.info.experiment_id,
            "metrics": dict(run.data.metrics),
            "config_name": tags.get(TAG_CONFIG_NAME),
        },
        "dataset": {
            "md5": tags.get(TAG_DATASET_MD5),
            "path": tags.get(TAG_DATASET_PATH),
            "data_git_rev": tags.get(TAG_DATA_GIT_REV),
            "data_dvc_uncommitted": _flag(tags.get(TAG_DATA_DIRTY)),
            "code_git_rev": tags.get(TAG_CODE_GIT_REV),
            "code_dirty": _flag(tags.get(TAG_CODE_DIRTY)),
        },
        "validation": {
            "success": _flag(tags.get(TAG_VALIDATION)),
            "images": _int(tags.get(TAG_VALIDATION_IMAGES)),
            "failures": (validation or {}).get("failures"),
            "drift": (validation or {}).get("drift"),
            "report": f"runs:/{mv.run_id}/{ARTIFACT_VALIDATION_REPORT}",
            "data_docs": f"runs:/{mv.run_id}/{ARTIFACT_DATA_DOCS}/index.html" if (validation or {}).get("data_docs") else None,
        },
    }


def format_lineage(chain: dict) -> str:
    """The chain as an indented, human-readable tree."""
    e, m, r, d, v = chain["export"], chain["model"], chain["run"], chain["dataset"], chain["validation"]
    if e["exists"]:
        files = ", ".join(f"{name} [{state}]" for name, state in e["files"].items())
        export_line = f"export   {e['path']}  hashes {'ok' if e['hashes_ok'] else 'MISMATCH'}: {files}"
    else:
        export_line = f"export   {e['path']} is gone" if e["path"] else "export   none: this version was not promoted"
    metrics = ", ".join(f"{k}={val:.4f}" for k, val in sorted(r["metrics"].items()) if k.startswith("fid") or k.startswith("extractor"))
    aliases = ", ".join(m["aliases"]) or "no alias"
    return "\n".join(
        [
            export_line,
            f"  -> model    {m['name']} version {m['version']} ({aliases}); gate {m['gate']}: {'; '.join(m['gate_reasons'])}",
            f"  -> run      {r['id']} [{r['status']}] config {r['config_name']}; {metrics}",
            f"  -> dataset  md5 {d['md5']} at {d['path']}/; data.dvc revision {d['data_git_rev']}; code revision {d['code_git_rev']}"
            + (" (uncommitted changes)" if d["code_dirty"] else "")
            + ("; data.dvc was NOT committed when it trained: no revision names this dataset" if d["data_dvc_uncommitted"] else ""),
            f"  -> validation {'passed' if v['success'] else 'FAILED'} on {v['images']} images; report {v['report']}"
            + (f"; data docs {v['data_docs']}" if v.get("data_docs") else "")
            + (f"; drift: {'; '.join(v['drift']['findings'])}" if (v.get("drift") or {}).get("findings") else ""),
            *filter(None, [format_origin(d.get("synthetic"))]),
        ]
    )


def trained_on(mlc, dataset_md5: str) -> list[dict]:
    """Reverse lineage: every model version trained on dataset `dataset_md5`, with its aliases, gate and export."""
    rows: list[dict] = []
    aliases: dict[str, dict[str, str]] = {}  # model name -> {alias: version}
    for mv in versions_trained_on(mlc, dataset_md5):
        tags = dict(mv.tags or {})
        held = aliases.setdefault(mv.name, current_aliases(mlc, mv.name))  # a search does not return aliases
        rows.append(
            {
                "model": mv.name,
                "version": str(mv.version),
                "aliases": sorted(a for a, v in held.items() if v == str(mv.version)),
                "gate": tags.get(TAG_GATE),
                "run_id": mv.run_id,
                "export": tags.get(TAG_EXPORT_DIR),
                "export_uri": tags.get(TAG_EXPORT_URI),
                "withdrawn": tags.get(TAG_WITHDRAWN),
                "data_git_rev": tags.get(TAG_DATA_GIT_REV),
                "data_dvc_uncommitted": _flag(tags.get(TAG_DATA_DIRTY)),
            }
        )
    return rows


def format_trained_on(dataset_md5: str, rows: list[dict], synthetic: dict | None = None) -> str:
    origin = format_origin(synthetic)
    if not rows:
        return f"no model version was trained on dataset {dataset_md5}" + (f"\n{origin}" if origin else "")
    lines = [f"{len(rows)} model version(s) trained on dataset {dataset_md5}:", *([origin] if origin else [])]
    for r in rows:
        lines.append(
            f"  {r['model']} version {r['version']} ({', '.join(r['aliases']) or 'no alias'}); gate {r['gate']}; "
            f"run {r['run_id']}; export {r['export'] or 'none'}" + (f"; WITHDRAWN {r['withdrawn']}" if r["withdrawn"] else "")
        )
    return "\n".join(lines)
