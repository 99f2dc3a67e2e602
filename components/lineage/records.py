"""The run's own records of a version: `gate/decision.json` and `summary.json` hash-linked to the version (their
sha256 in its tags, written by the run that registered it), and why a version stands although its run was marked
FAILED (`ganops doctor` after the process died: the ledger entry had committed the decision before the crash).

`check_run_records` is the audit's `run records` link, a pure function of what was read; `reaped_note` is the note
the reaper leaves on such a version.
"""

from __future__ import annotations

from pathlib import Path

from components.core.atomic import file_digest
from components.core.names import (
    ARTIFACT_GATE,
    ARTIFACT_SUMMARY,
    TAG_GATE_SHA256,
    TAG_REAPED,
    TAG_RUN_FAILED_NOTE,
    TAG_SUMMARY_SHA256,
)
from components.promotion import ledger
from components.promotion.moves import gate_entry
from components.registry.models import search_versions

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
RECORDS = ((ARTIFACT_GATE, TAG_GATE_SHA256), (ARTIFACT_SUMMARY, TAG_SUMMARY_SHA256))


def check_run_records(
    digests: dict[str, tuple[str | None, str | None]], status: str, reaped: str | None, note: str | None
) -> tuple[str, str]:
    """(status, evidence) from each record's (sha256 of the run's artifact or None, sha256 the version records or
    None), keyed by artifact path, and the run's status, its reaper's reason and the note on the version."""
    found, unrecorded = [], []
    for path, (actual, recorded) in digests.items():
        if not recorded:
            unrecorded.append(path)
        elif actual is None:
            return FAIL, f"{path} is missing from the run's artifacts (the version records sha256 {recorded[:16]}...)"
        elif actual != recorded:
            return FAIL, f"{path} has sha256 {actual[:16]}..., the version records {recorded[:16]}..."
        else:
            found.append(f"{path} sha256 {actual[:16]}... as recorded")
    evidence = "; ".join(found + ([f"{', '.join(unrecorded)} not recorded"] if unrecorded else []))
    if status != "FINISHED" and status != "RUNNING":
        why = f"was marked {status} after its process died ({reaped})" if reaped else f"ended {status}"
        return WARN, f"the run {why}; " + (note or "no note on the version says why it stands") + (f"; {evidence}" if evidence else "")
    if not found:
        return SKIP, "not recorded for this version (registered before ganops recorded it)"
    return PASS, evidence


def reaped_note(version: str, entry: ledger.Entry | None, reason: str) -> str:
    """Why `version`, registered by a run reaped for `reason`, stands (or what happens to it when it does not)."""
    if entry is None:
        return (
            f"its run was marked FAILED ({reason}) before a gate decision on version {version} was committed: it holds no "
            "alias, and the next run of the same training result decides it"
        )
    return (
        f"its run was marked FAILED ({reason}) after ledger entry #{entry.seq} ({entry.action}) had committed the gate "
        f"decision on version {version}: the version stands on that entry (ganops history --verify, ganops audit)"
    )


# The side effects.


def record_run_artifact(mlc, model_name: str, version: str, run_id: str, tag: str, sha256: str) -> None:
    """Tag `version` with the sha256 of an artifact its own run logged (a later run reusing the version does not)."""
    if str(mlc.get_model_version(model_name, version).run_id) == run_id:
        mlc.set_model_version_tag(model_name, version, tag, sha256)


def note_reaped_versions(mlc, run_id: str, reason: str) -> list[str]:
    """Leave `reaped_note` on every version the reaped run registered (and on the run). Returns 'MODEL version N'."""
    noted = []
    for mv in search_versions(mlc, f"run_id = '{run_id}'"):
        note = reaped_note(str(mv.version), gate_entry(ledger.load_chain(mlc, mv.name), str(mv.version)), reason)
        mlc.set_model_version_tag(mv.name, str(mv.version), TAG_RUN_FAILED_NOTE, note)
        mlc.set_tag(run_id, TAG_RUN_FAILED_NOTE, f"{mv.name} version {mv.version}: {note}")
        noted.append(f"{mv.name} version {mv.version}")
    return noted


def run_records(mlc, mv, tmp: Path) -> tuple[str, str]:
    """The `run records` link of version `mv`: its run's records read and checked."""
    digests = {}
    for path, tag in RECORDS:
        try:
            local = Path(mlc.download_artifacts(mv.run_id, path, str(tmp)))
            actual = file_digest(local) if local.is_file() else None
        except Exception:  # MLflow raises its own types for a missing artifact
            actual = None
        digests[path] = (actual, (mv.tags or {}).get(tag))
    run = mlc.get_run(mv.run_id)
    return check_run_records(digests, run.info.status, run.data.tags.get(TAG_REAPED), (mv.tags or {}).get(TAG_RUN_FAILED_NOTE))
