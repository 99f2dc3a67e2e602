"""What `ganops promote`, `approve`, `reject`, `rollback`, `history` and `reconcile` do to a project's registry: each a move through the
ledger (promotion.moves), with the champion-to-be's export verified, or rebuilt from the registry, first."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from components.config import RetrainConfig, export_root
from components.core.errors import GanopsError
from components.core.names import (
    ARTIFACT_CONFIG,
    CANDIDATE,
    CHAMPION,
    GATE_PROMOTED,
    PAIRED_DIFF,
    PREVIOUS_CHAMPION,
    TAG_EXPORT_DIR,
    TAG_EXPORT_MANIFEST,
    TAG_EXPORT_URI,
    TAG_GATE,
    TAG_GATE_RULES,
    TAG_PAIRED_WITH,
    TAG_VALIDATION,
    TAG_WITHDRAWN,
    split_champion_metrics,
)
from components.presets import config_from_dict
from components.promotion import ledger
from components.promotion.gate import PROMOTE, REJECT, Decision, decide
from components.promotion.moves import TRACKED, after_promote, after_reject, after_rollback, move, reconcile, tag_decision, tracked_aliases
from components.promotion.rules import Evidence
from components.registry.models import download_weights, record_export, require_model, resolve_version
from components.serving.export import export_dir_for, export_generator, export_is_whole, manifest_digest
from components.serving.infra import infra_validate
from components.serving.publish import export_url, is_published, publish_export


def check_reason(reason: str) -> str:
    if not reason.strip():
        raise GanopsError("--reason is empty: say why, it is kept in the promotion ledger")
    return reason.strip()


def version_config(mlc, model_name: str, version: str) -> RetrainConfig:
    """The resolved config of the run that produced the version (its gate policy, its export folder)."""
    mv = resolve_version(mlc, model_name, version)
    local = mlc.download_artifacts(mv.run_id, ARTIFACT_CONFIG)
    return config_from_dict(json.loads(Path(local).read_text()), source=f"{model_name} version {version} ({ARTIFACT_CONFIG})")


EXPORT_TAGS = (TAG_EXPORT_DIR, TAG_EXPORT_MANIFEST, TAG_EXPORT_URI)  # about the export itself: not its lineage


def ensure_export(mlc, project_dir: Path, model_name: str, version: str) -> Path:
    """The version's export folder, verified against its manifest (and the manifest against the sha256 recorded on
    the version); rebuilt from the registered weights when it is missing, of an older format, or a file differs;
    published again when the config publishes to S3 and the published manifest is not this one."""
    mv = resolve_version(mlc, model_name, version)
    if mv.tags.get(TAG_WITHDRAWN):
        raise GanopsError(
            f"{model_name} version {mv.version} was withdrawn ({mv.tags[TAG_WITHDRAWN]}); it is not exported, served or made champion again"
        )
    config = version_config(mlc, model_name, version)
    root = export_root(config, project_dir)
    folder = export_dir_for(root, model_name, version)
    if not export_is_whole(folder, mv.tags.get(TAG_EXPORT_MANIFEST)):
        folder = rebuild_export(mlc, mv, root)
    if config.export.s3 and not is_published(folder, export_url(config.export.s3, model_name, version)):
        record_export(mlc, model_name, version, folder, manifest_digest(folder), publish_export(folder, config.export.s3))
    return folder


def rebuild_export(mlc, mv, root: Path) -> Path:
    """The export of a registered version, written again from its registered (and checked) weights, with the
    metrics and gate decision recorded for it."""
    model_name, version = mv.name, str(mv.version)
    lineage = {**{k: v for k, v in mv.tags.items() if k not in EXPORT_TAGS}, "model_name": model_name, "model_version": version}
    run = mlc.get_run(mv.run_id).data
    metrics, _ = split_champion_metrics(run.metrics)
    decision = {
        "verdict": mv.tags.get(TAG_GATE, "not judged"),
        "promote": mv.tags.get(TAG_GATE) == GATE_PROMOTED,
        "reasons": [],
        "rules": json.loads(mv.tags.get(TAG_GATE_RULES, "[]")),
    }
    with download_weights(mv) as weights:
        folder = export_generator(weights, root, model_name, version, lineage, metrics, decision)
    record_export(mlc, model_name, version, folder, manifest_digest(folder))
    return folder


# Run params that make two runs' metrics comparable: the dataset, and the seed and evaluation settings behind the
# extractor and the latents.
COMPARABLE_PARAMS = ("dataset_md5", "seed", "evaluate.num_samples", "evaluate.extractor_epochs", "evaluate.batch_size")


def recorded_evidence(mlc, model_name: str, version: str, champion: str | None) -> Evidence:
    """The evidence recorded for `version` against `champion`: the candidate's logged metrics, the data validation
    result, and the champion's metrics as re-scored in the candidate's run with the paired bootstrap, when that run
    was judged against this same champion; else the champion's own run's metrics when both runs scored alike (the
    same dataset, seed and evaluation settings), else none: the rules comparing with the champion fail and say so."""
    mv = resolve_version(mlc, model_name, version)
    run = mlc.get_run(mv.run_id)
    metrics, rescored = split_champion_metrics(run.data.metrics)
    if champion is None:
        return Evidence(metrics, None, mv.tags.get(TAG_VALIDATION) == "True")
    if run.data.tags.get(TAG_PAIRED_WITH) == champion:
        paired = {k: v for k, v in metrics.items() if k.startswith(PAIRED_DIFF)}
        return Evidence(metrics, rescored, mv.tags.get(TAG_VALIDATION) == "True", paired)
    theirs = mlc.get_run(resolve_version(mlc, model_name, champion).run_id).data
    alike = all(theirs.params.get(k) == run.data.params.get(k) for k in COMPARABLE_PARAMS)  # same data, extractor, latents
    champion_metrics = split_champion_metrics(theirs.metrics)[0] if alike else {}
    return Evidence(metrics, champion_metrics, mv.tags.get(TAG_VALIDATION) == "True")


def judge_recorded(mlc, project_dir: Path, model_name: str, version: str) -> tuple[str, dict[str, str], Decision]:
    """`version` (as the registry spells it), the aliases now, and the version's own gate rules applied to its
    recorded evidence against the current champion, with its export written or verified and proven again in a
    fresh process (infra_valid judges this export, not a record)."""
    version = str(resolve_version(mlc, model_name, version).version)
    reconcile(mlc, model_name)  # the aliases as the ledger says (a crash or an edit in the MLflow UI may differ)
    before = tracked_aliases(mlc, model_name)
    if before.get(CHAMPION) == version:
        raise GanopsError(f"{model_name} version {version} is the champion already")
    policy = version_config(mlc, model_name, version).gate
    infra = infra_validate(ensure_export(mlc, project_dir, model_name, version)).metrics()
    evidence = recorded_evidence(mlc, model_name, version, before.get(CHAMPION))
    return version, before, decide(replace(evidence, candidate={**evidence.candidate, **infra}), policy)


def promote(mlc, project_dir: Path, model_name: str, version: str, reason: str, force: bool = False) -> ledger.Entry:
    """Make `version` champion if the gate's rules pass on its recorded metrics against the champion's (with
    `force`, despite them: the override is recorded). Raises GanopsError naming the failing rules."""
    reason = check_reason(reason)
    version, before, decision = judge_recorded(mlc, project_dir, model_name, version)
    if not decision.passed and not force:
        raise GanopsError(
            f"{model_name} version {version} fails the gate: {'; '.join(decision.reasons)} "
            "(on the recorded metrics; --force overrides, and the ledger records it)"
        )
    note = reason if decision.passed else f"{reason} (forced over: {'; '.join(decision.reasons)})"
    return move(
        mlc,
        model_name,
        ledger.PROMOTE,
        version,
        note,
        after_promote,
        expected_champion=before.get(CHAMPION),
        rules=[r.as_dict() for r in decision.results],
    )


def _candidate(mlc, model_name: str, version: str) -> str:
    version = str(resolve_version(mlc, model_name, version).version)
    reconcile(mlc, model_name)
    waiting = tracked_aliases(mlc, model_name).get(CANDIDATE)
    if waiting != version:
        raise GanopsError(
            f"{model_name} version {version} is not awaiting approval (the candidate is {'version ' + waiting if waiting else 'none'})"
        )
    return version


def approve(mlc, project_dir: Path, model_name: str, version: str, reason: str) -> ledger.Entry:
    """The candidate awaiting approval becomes champion, if its rules still pass against the champion now (it may
    have changed since the gate); its export is written and verified first."""
    reason = check_reason(reason)
    version = _candidate(mlc, model_name, version)
    version, before, decision = judge_recorded(mlc, project_dir, model_name, version)
    if not decision.passed:
        raise GanopsError(
            f"{model_name} version {version} no longer passes the gate against the champion now: "
            f"{'; '.join(decision.reasons)} (`ganops reject` it, or `ganops promote --force`)"
        )
    entry = move(
        mlc,
        model_name,
        ledger.APPROVE,
        version,
        reason,
        after_promote,
        expected_champion=before.get(CHAMPION),
        rules=[r.as_dict() for r in decision.results],
    )
    tag_decision(mlc, model_name, entry, Decision(PROMOTE, decision.results))
    return entry


def reject(mlc, model_name: str, version: str, reason: str) -> ledger.Entry:
    """The candidate awaiting approval becomes the challenger; the champion stays."""
    reason = check_reason(reason)
    version = _candidate(mlc, model_name, version)
    entry = move(mlc, model_name, ledger.REJECT, version, reason, after_reject)
    tag_decision(mlc, model_name, entry, Decision(REJECT, []))
    return entry


def was_champion(chain: ledger.Chain, mv) -> bool:
    return any(e.aliases_after.get(CHAMPION) == str(mv.version) for e in chain.entries) or mv.tags.get(TAG_GATE) == GATE_PROMOTED


def rollback(mlc, project_dir: Path, model_name: str, reason: str, to: str | None = None) -> ledger.Entry:
    """Champion back to the previous champion (or `to`, a version that was champion before), its export verified
    or rebuilt. Raises GanopsError naming what is missing."""
    reason = check_reason(reason)
    require_model(mlc, model_name)
    reconcile(mlc, model_name)
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
    """The ledger and what is wrong with it: damaged entries, entries the registry says are missing (the ledger
    deleted, or its newest entries), then aliases moved outside ganops."""
    require_model(mlc, model_name)
    chain = ledger.checked_chain(mlc, model_name)
    return chain, chain.problems + ledger.alias_drift(chain, tracked_aliases(mlc, model_name), TRACKED)
