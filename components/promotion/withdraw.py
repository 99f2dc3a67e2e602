"""`ganops withdraw --data`: take every model version trained on a bad dataset version out of service.

For each affected version, in this order (each step idempotent, so a rerun after a kill converges): tag it
withdrawn (from then on it is never served, promoted, approved or rolled back to); for each model whose champion
is affected, verify (or rebuild) the export of the newest unaffected version that passed its gate; one ledger entry
per affected version that still holds an alias (the commit point), moving the champion back when it was one; then
quarantine its export (the folder moves under `quarantined/`, a published S3 copy loses its manifest).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from components.config import export_root
from components.core.errors import GanopsError
from components.core.names import CHAMPION, GATE_PROMOTED, TAG_EXPORT_DIR, TAG_EXPORT_URI, TAG_GATE, TAG_WITHDRAWN
from components.promotion import ledger
from components.promotion.actions import check_reason, ensure_export, version_config, was_champion
from components.promotion.moves import after_withdraw, fallback_champion, move, reconcile, tracked_aliases
from components.registry.models import all_versions, versions_trained_on
from components.serving.export import export_dir_for
from components.serving.publish import unpublish_export

QUARANTINE = "quarantined"


@dataclass(frozen=True)
class Withdrawn:
    model: str
    version: str
    aliases_removed: list[str]
    champion_now: str | None  # after the withdrawal, when this version was the champion
    export: str | None  # where its export was quarantined


def quarantine(folder: Path) -> Path:
    """Move an export folder to <model folder>/quarantined/v<N> (a rename: whole or not at all); a folder already
    there stays."""
    if folder.parent.name == QUARANTINE:
        return folder
    target = folder.parent / QUARANTINE / folder.name
    if folder.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # a run killed after an earlier rename and a rebuild since
            shutil.rmtree(target)
        os.rename(folder, target)
    return target


def recorded_export(mlc, project_dir: Path, mv) -> Path:
    """The export folder the version's tag names, if it is where ganops writes that version's export (or its
    quarantined copy); raises GanopsError otherwise: a tag never makes ganops move an arbitrary folder."""
    folder = Path(mv.tags[TAG_EXPORT_DIR]).resolve()
    expected = export_dir_for(export_root(version_config(mlc, mv.name, str(mv.version)), project_dir), mv.name, str(mv.version)).resolve()
    if folder not in (expected, expected.parent / QUARANTINE / expected.name):
        raise GanopsError(
            f"{mv.name} version {mv.version}: its tag {TAG_EXPORT_DIR} names {folder}, not its export folder {expected}; not moving it"
        )
    return folder


def _withdraw_version(mlc, project_dir: Path, mv, affected: set[str], reason: str) -> Withdrawn:
    model, version = mv.name, str(mv.version)
    chain = ledger.intact_chain(mlc, model)
    before = dict(chain.last.aliases_after) if chain.last else tracked_aliases(mlc, model)
    held = sorted(alias for alias, v in before.items() if v == version)
    champion_now = None
    if held:
        fallback = None
        if before.get(CHAMPION) == version:
            versions = [
                (str(v.version), v.tags.get(TAG_GATE) == GATE_PROMOTED or was_champion(chain, v))
                for v in all_versions(mlc, model)
                if not v.tags.get(TAG_WITHDRAWN)
            ]
            fallback = fallback_champion(versions, affected)
            if fallback:
                ensure_export(mlc, project_dir, model, fallback)
            champion_now = fallback
        move(mlc, model, ledger.WITHDRAW, version, reason, lambda b, v: after_withdraw(b, v, fallback))
    export = None
    if mv.tags.get(TAG_EXPORT_DIR):
        export = str(quarantine(recorded_export(mlc, project_dir, mv)))
        mlc.set_model_version_tag(model, version, TAG_EXPORT_DIR, export)
    if mv.tags.get(TAG_EXPORT_URI):
        unpublish_export(mv.tags[TAG_EXPORT_URI])
    return Withdrawn(model, version, held, champion_now, export)


def withdraw(mlc, project_dir: Path, dataset_md5: str, reason: str) -> list[Withdrawn]:
    """Withdraw every version trained on `dataset_md5`. Raises GanopsError when none was."""
    reason = check_reason(reason)
    found = versions_trained_on(mlc, dataset_md5)
    if not found:
        raise GanopsError(f"no model version was trained on dataset {dataset_md5}")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for mv in found:
        if not mv.tags.get(TAG_WITHDRAWN):
            mlc.set_model_version_tag(mv.name, str(mv.version), TAG_WITHDRAWN, f"{stamp} dataset {dataset_md5}: {reason}")
    for model in sorted({mv.name for mv in found}):
        reconcile(mlc, model)
    affected = {(mv.name, str(mv.version)) for mv in found}
    # Versions without the champion alias first: the champion's entry then moves to a fallback that holds no alias
    # of an affected version.
    ordered = sorted(found, key=lambda mv: tracked_aliases(mlc, mv.name).get(CHAMPION) == str(mv.version))
    return [_withdraw_version(mlc, project_dir, mv, {v for m, v in affected if m == mv.name}, reason) for mv in ordered]
