"""What `ganops promote`, `rollback`, `history` and `reconcile` do to a project's registry: each a move through the
ledger (promotion.moves), with the champion-to-be's export verified, or rebuilt from the registry, first."""

from __future__ import annotations

import json
from pathlib import Path

from components.config import RetrainConfig, config_from_dict, export_root
from components.core.errors import GanopsError, RegistryError
from components.core.names import ARTIFACT_CONFIG, CHAMPION, GATE_PROMOTED, PREVIOUS_CHAMPION, TAG_GATE, TAG_VALIDATION
from components.promotion import ledger
from components.promotion.gate import ci_high_key, decide_promotion
from components.promotion.moves import TRACKED, after_promote, after_rollback, move, tracked_aliases
from components.registry.models import download_weights, record_export, require_model, resolve_version
from components.serving.export import MANIFEST, export_dir_for, export_generator, verify_export


def _reason(reason: str) -> str:
    if not reason.strip():
        raise GanopsError("--reason is empty: say why, it is kept in the promotion ledger")
    return reason.strip()


def version_config(mlc, model_name: str, version: str) -> RetrainConfig:
    """The resolved config of the run that produced the version (its gate policy, its export folder)."""
    mv = resolve_version(mlc, model_name, version)
    local = mlc.download_artifacts(mv.run_id, ARTIFACT_CONFIG)
    return config_from_dict(json.loads(Path(local).read_text()), source=f"{model_name} version {version} ({ARTIFACT_CONFIG})")


def ensure_export(mlc, project_dir: Path, model_name: str, version: str) -> Path:
    """The version's export folder, verified against its manifest; rebuilt from the registered weights when it is
    missing or a file does not match."""
    mv = resolve_version(mlc, model_name, version)
    root = export_root(version_config(mlc, model_name, version), project_dir)
    folder = export_dir_for(root, model_name, version)
    if (folder / MANIFEST).is_file() and verify_export(folder)["ok"]:
        return folder
    lineage = {**dict(mv.tags), "model_name": model_name, "model_version": version}
    folder = export_generator(download_weights(model_name, version), root, model_name, version, lineage)
    record_export(mlc, model_name, version, folder)
    return folder


def promote(mlc, project_dir: Path, model_name: str, version: str, reason: str, force: bool = False) -> ledger.Entry:
    """Make `version` champion if the gate's rules pass on its recorded metrics against the champion's (with
    `force`, despite them: the override is recorded). Raises GanopsError naming the failing rules."""
    reason = _reason(reason)
    mv = resolve_version(mlc, model_name, version)
    version = str(mv.version)
    before = tracked_aliases(mlc, model_name)
    if before.get(CHAMPION) == version:
        raise GanopsError(f"{model_name} version {version} is the champion already")
    policy = version_config(mlc, model_name, version).gate
    metrics = mlc.get_run(mv.run_id).data.metrics
    if policy.metric not in metrics:
        raise RegistryError(f"{model_name} version {version} has no recorded {policy.metric} (gate.metric) to judge")
    champion = resolve_version(mlc, model_name, before[CHAMPION]) if CHAMPION in before else None
    champion_value = mlc.get_run(champion.run_id).data.metrics.get(policy.metric) if champion else None
    decision = decide_promotion(metrics[policy.metric], champion_value, mv.tags.get(TAG_VALIDATION) == "True", policy,
                                metrics.get(ci_high_key(policy.metric)))
    if not decision.promote and not force:
        raise GanopsError(f"{model_name} version {version} fails the gate: {'; '.join(decision.reasons)} "
                          "(on the recorded metrics; --force overrides, and the ledger records it)")
    ensure_export(mlc, project_dir, model_name, version)
    rules = [{"name": "gate", "passed": decision.promote, "reasons": decision.reasons, "forced": force and not decision.promote}]
    note = reason if decision.promote else f"{reason} (forced over: {'; '.join(decision.reasons)})"
    return move(mlc, model_name, ledger.PROMOTE, version, note, after_promote, expected_champion=before.get(CHAMPION), rules=rules)


def was_champion(chain: ledger.Chain, mv) -> bool:
    return any(e.aliases_after.get(CHAMPION) == str(mv.version) for e in chain.entries) or mv.tags.get(TAG_GATE) == GATE_PROMOTED


def rollback(mlc, project_dir: Path, model_name: str, reason: str, to: str | None = None) -> ledger.Entry:
    """Champion back to the previous champion (or `to`, a version that was champion before), its export verified
    or rebuilt. Raises GanopsError naming what is missing."""
    reason = _reason(reason)
    require_model(mlc, model_name)
    before = tracked_aliases(mlc, model_name)
    target = to or before.get(PREVIOUS_CHAMPION)
    if target is None:
        raise GanopsError(f"{model_name} has no previous_champion to roll back to; name one with --to VERSION")
    mv = resolve_version(mlc, model_name, target)
    target = str(mv.version)
    if target == before.get(CHAMPION):
        raise GanopsError(f"{model_name} version {target} is the champion already")
    if not was_champion(ledger.intact_chain(mlc, model_name), mv):
        raise GanopsError(f"{model_name} version {target} was never champion: `ganops promote` it instead")
    ensure_export(mlc, project_dir, model_name, target)
    return move(mlc, model_name, ledger.ROLLBACK, target, reason, after_rollback, expected_champion=before.get(CHAMPION))


def history(mlc, model_name: str) -> tuple[ledger.Chain, list[str]]:
    """The ledger and what is wrong with it: damaged entries, then aliases moved outside ganops."""
    require_model(mlc, model_name)
    chain = ledger.load_chain(mlc, model_name)
    return chain, chain.problems + ledger.alias_drift(chain, tracked_aliases(mlc, model_name), TRACKED)
