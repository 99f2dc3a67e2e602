"""Lineage: which data and code produced a model, recorded as model-version tags and read back as a chain.

Chain: export files -> model version -> training run -> dataset md5 and revisions -> validation result.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.export import MANIFEST, verify_export

TAG_DATASET_MD5 = "ganops.dataset_md5"
TAG_DATASET_PATH = "ganops.dataset_path"
TAG_DATA_GIT_REV = "ganops.data_git_rev"
TAG_CODE_GIT_REV = "ganops.code_git_rev"
TAG_CODE_DIRTY = "ganops.code_dirty"
TAG_VALIDATION = "ganops.validation_success"
TAG_VALIDATION_IMAGES = "ganops.validation_images"
TAG_RUN_ID = "ganops.run_id"
TAG_CONFIG_NAME = "ganops.config_name"


def lineage_tags(dataset: dict, validation: dict, run_id: str, config_name: str) -> dict[str, str]:
    """The tags every run and model version carries (plain strings; None becomes 'unknown')."""
    def s(v):
        return "unknown" if v is None else str(v)

    return {
        TAG_DATASET_MD5: s(dataset.get("md5")),
        TAG_DATASET_PATH: s(dataset.get("path")),
        TAG_DATA_GIT_REV: s(dataset.get("data_git_rev")),
        TAG_CODE_GIT_REV: s(dataset.get("code_git_rev")),
        TAG_CODE_DIRTY: s(dataset.get("code_dirty")),
        TAG_VALIDATION: s(validation.get("success")),
        TAG_VALIDATION_IMAGES: s(validation.get("images")),
        TAG_RUN_ID: s(run_id),
        TAG_CONFIG_NAME: s(config_name),
    }


def resolve_lineage(mlc, model_name: str, ref: str | None) -> dict:
    """Read the chain for `model_name@ref` from the registry, the run and the export folder (hashes re-checked)."""
    from components.registry import TAG_EXPORT_DIR, resolve_version

    mv = resolve_version(mlc, model_name, ref)
    run = mlc.get_run(mv.run_id)
    tags = dict(mv.tags)
    validation = None
    try:
        local = mlc.download_artifacts(mv.run_id, "validation/report.json")
        validation = json.loads(Path(local).read_text())
    except Exception:  # older or failed runs may lack the report; the tag still says pass/fail
        validation = None
    folder = Path(tags[TAG_EXPORT_DIR]) if TAG_EXPORT_DIR in tags else None
    export = {"path": str(folder) if folder else None, "exists": folder is not None and (folder / MANIFEST).is_file()}
    if export["exists"]:
        checked = verify_export(folder)
        export.update({"files": checked["files"], "hashes_ok": checked["ok"]})
    return {
        "export": export,
        "model": {"name": model_name, "version": str(mv.version), "aliases": list(getattr(mv, "aliases", []) or []),
                  "gate": tags.get("ganops.gate"), "gate_reasons": json.loads(tags.get("ganops.gate_reasons", "[]")),
                  "source": mv.source},
        "run": {"id": run.info.run_id, "status": run.info.status, "experiment_id": run.info.experiment_id,
                "metrics": dict(run.data.metrics), "config_name": tags.get(TAG_CONFIG_NAME)},
        "dataset": {"md5": tags.get(TAG_DATASET_MD5), "path": tags.get(TAG_DATASET_PATH),
                    "data_git_rev": tags.get(TAG_DATA_GIT_REV), "code_git_rev": tags.get(TAG_CODE_GIT_REV),
                    "code_dirty": tags.get(TAG_CODE_DIRTY)},
        "validation": {"success": tags.get(TAG_VALIDATION), "images": tags.get(TAG_VALIDATION_IMAGES),
                       "failures": (validation or {}).get("failures"), "drift": (validation or {}).get("drift"),
                       "report": f"runs:/{mv.run_id}/validation/report.json",
                       "data_docs": f"runs:/{mv.run_id}/validation/data_docs/index.html" if (validation or {}).get("data_docs") else None},
    }


def format_lineage(chain: dict) -> str:
    """The chain as an indented, human-readable tree."""
    e, m, r, d, v = chain["export"], chain["model"], chain["run"], chain["dataset"], chain["validation"]
    if e["exists"]:
        files = ", ".join(f"{name} [{state}]" for name, state in e["files"].items())
        export_line = f"export   {e['path']}  hashes {'ok' if e['hashes_ok'] else 'MISMATCH'}: {files}"
    else:
        export_line = (f"export   {e['path']} is gone" if e["path"] else "export   none: this version was not promoted")
    metrics = ", ".join(f"{k}={val:.4f}" for k, val in sorted(r["metrics"].items()) if k.startswith("fid") or k.startswith("extractor"))
    aliases = ", ".join(m["aliases"]) or "no alias"
    return "\n".join([
        export_line,
        f"  -> model    {m['name']} version {m['version']} ({aliases}); gate {m['gate']}: {'; '.join(m['gate_reasons'])}",
        f"  -> run      {r['id']} [{r['status']}] config {r['config_name']}; {metrics}",
        f"  -> dataset  md5 {d['md5']} at {d['path']}/; data.dvc revision {d['data_git_rev']}; code revision {d['code_git_rev']}"
        + (" (uncommitted changes)" if d["code_dirty"] == "True" else ""),
        f"  -> validation {'passed' if v['success'] == 'True' else 'FAILED'} on {v['images']} images; report {v['report']}"
        + (f"; data docs {v['data_docs']}" if v.get("data_docs") else "")
        + (f"; drift: {'; '.join(v['drift']['findings'])}" if (v.get("drift") or {}).get("findings") else ""),
    ])
