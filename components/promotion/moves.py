"""Alias moves through the ledger: the gate's decision, a manual promote, a rollback, and reconcile after a crash.

Every move computes the aliases after it (pure functions below), appends the ledger entry (the commit point; the
append re-checks that the champion is still the one the decision was made against) and then sets the registry's
aliases to the entry's. The champion's export is written and verified before the entry, so the champion alias only
ever points at a version with an export. A crash between the entry and the aliases is repaired by `reconcile`,
which the next run (or `ganops reconcile`) calls: the ledger's last entry is the truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from components.core.errors import RegistryError
from components.core.faults import AFTER_ALIASES, AFTER_LEDGER, fault_point
from components.core.names import (
    CANDIDATE,
    CHALLENGER,
    CHAMPION,
    GATE_AWAITING,
    GATE_PROMOTED,
    GATE_REJECTED,
    PREVIOUS_CHAMPION,
    TAG_GATE,
    TAG_GATE_REASONS,
    TAG_GATE_RULES,
    TAG_REPLACED_BY,
)
from components.promotion import ledger
from components.promotion.gate import AWAIT_APPROVAL, PROMOTE, REJECT, Decision
from components.promotion.rules import RuleResult
from components.registry.models import current_aliases, prior_version, set_aliases

TRACKED = ledger.TRACKED
ANY_CHAMPION = object()  # a move that does not depend on who is champion now


class StaleDecision(RegistryError):
    """The champion moved between the decision and its commit: decide again against the new one."""


def _without(aliases: dict[str, str], version: str, *names: str) -> dict[str, str]:
    return {k: v for k, v in aliases.items() if not (k in names and v == version)}


def after_promote(before: dict[str, str], version: str) -> dict[str, str]:
    """`version` becomes champion; the champion it replaces becomes previous_champion."""
    after = _without(before, version, CHALLENGER, CANDIDATE)
    old = before.get(CHAMPION)
    if old and old != version:
        after[PREVIOUS_CHAMPION] = old
    after[CHAMPION] = version
    return after


def after_reject(before: dict[str, str], version: str) -> dict[str, str]:
    """`version` becomes the challenger (no longer a candidate); the champion stays."""
    return {**_without(before, version, CANDIDATE), CHALLENGER: version}


def after_await(before: dict[str, str], version: str) -> dict[str, str]:
    """`version` becomes the candidate awaiting approval (a candidate it supersedes becomes the challenger); the
    champion stays."""
    superseded = before.get(CANDIDATE)
    return {**before, **({CHALLENGER: superseded} if superseded and superseded != version else {}), CANDIDATE: version}


def after_rollback(before: dict[str, str], target: str) -> dict[str, str]:
    """Champion back to `target`; the champion it replaces becomes previous_champion (so a rollback can be undone)."""
    return after_promote(before, target)


def after_withdraw(before: dict[str, str], version: str, fallback: str | None) -> dict[str, str]:
    """Every alias on `version` is removed; when it was champion, `fallback` (an unaffected version that passed its
    gate) becomes champion, or none is left."""
    after = {k: v for k, v in before.items() if v != version}
    if before.get(CHAMPION) == version and fallback:  # as after a promotion: the fallback holds no other alias
        after = {**_without(after, fallback, PREVIOUS_CHAMPION, CHALLENGER, CANDIDATE), CHAMPION: fallback}
    return after


def fallback_champion(versions: list[tuple[str, bool]], affected: set[str]) -> str | None:
    """The newest version that is not affected and passed its gate: (version, passed) pairs in any order."""
    usable = [int(v) for v, passed in versions if passed and v not in affected]
    return str(max(usable)) if usable else None


def tracked_aliases(mlc, model_name: str) -> dict[str, str]:
    return {k: v for k, v in current_aliases(mlc, model_name).items() if k in TRACKED}


def move(
    mlc,
    model_name: str,
    action: str,
    version: str,
    reason: str,
    after: Callable[[dict, str], dict],
    expected_champion=ANY_CHAMPION,
    rules: list[dict] | None = None,
    run_id: str = "",
    flow_run_id: str = "",
) -> ledger.Entry:
    """Append the ledger entry of one move, then set the registry's aliases to the ledger's latest entry. The
    aliases before are the ledger's (the registry may lag behind a move committed a moment ago). Raises
    StaleDecision when `expected_champion` (a version or None) is no longer the champion at the append. A retried
    call by the same run for the same version and action returns the entry it committed."""

    def make(chain: ledger.Chain) -> ledger.Entry:
        done = next((e for e in chain.entries if run_id and e.run_id == run_id and e.version == version and e.action == action), None)
        if done is not None:
            return done
        before = dict(chain.last.aliases_after) if chain.last else tracked_aliases(mlc, model_name)
        if expected_champion is not ANY_CHAMPION and before.get(CHAMPION) != expected_champion:
            raise StaleDecision(
                f"{model_name}: the champion is now {before.get(CHAMPION) or 'none'}, not "
                f"{expected_champion or 'none'} as when version {version} was judged; run again to judge it "
                "against the new champion"
            )
        return ledger.next_entry(
            chain,
            actor=ledger.actor(),
            action=action,
            model=model_name,
            version=version,
            aliases_before=before,
            aliases_after=after(before, version),
            reason=reason,
            rules=rules or [],
            run_id=run_id,
            flow_run_id=flow_run_id,
        )

    entry = ledger.append(mlc, model_name, make)
    fault_point(AFTER_LEDGER)
    reconcile(mlc, model_name)
    return entry


def reconcile(mlc, model_name: str, rounds: int = 5) -> list[str]:
    """Set the registry's aliases to the ledger's latest entry (after a crash between the two, or another
    writer's older alias moves landing last), again while entries keep arriving. Returns what differed; raises
    RegistryError when the ledger is damaged."""
    moved: list[str] = []
    for _ in range(rounds):
        chain = ledger.intact_chain(mlc, model_name)
        if chain.last is None:
            return moved
        drift = ledger.alias_drift(chain, tracked_aliases(mlc, model_name), TRACKED)
        if not drift:
            return moved
        moved += drift
        set_aliases(mlc, model_name, chain.last.aliases_after, TRACKED)
    return moved


# The gate's verdicts as ledger actions, alias moves and version tags.
GATE_MOVES = {
    PROMOTE: (ledger.GATE_PROMOTE, after_promote, GATE_PROMOTED),
    REJECT: (ledger.GATE_REJECT, after_reject, GATE_REJECTED),
    AWAIT_APPROVAL: (ledger.AWAITING_APPROVAL, after_await, GATE_AWAITING),
}
VERDICT_OF = {action: verdict for verdict, (action, _, _) in GATE_MOVES.items()}


def gate_entry(chain: ledger.Chain, version: str) -> ledger.Entry | None:
    """The newest gate entry for `version` (None when the run that registered it died before its gate)."""
    return next((e for e in reversed(chain.entries) if e.version == version and e.action in ledger.GATE_ACTIONS), None)


def decision_of(entry: ledger.Entry, note: str = "") -> Decision:
    """The gate decision a ledger entry committed, with its rule results."""
    return Decision(
        VERDICT_OF.get(entry.action, PROMOTE if entry.action in (ledger.PROMOTE, ledger.APPROVE) else REJECT),
        [RuleResult(**r) for r in entry.rules if set(r) == set(RuleResult.__dataclass_fields__)],
        note,
    )


def standing_decision(chain: ledger.Chain, version: str) -> Decision | None:
    """The gate's decision on `version` as the ledger committed it, which stands for a rerun of the same training
    result; None when the ledger has none."""
    entry = gate_entry(chain, version)
    if entry is None:
        return None
    decided = decision_of(entry)
    return decision_of(
        entry,
        f"version {version} holds this training result; its gate decision stands "
        f"({GATE_MOVES[decided.verdict][2]}, ledger entry {entry.seq})",
    )


def prior_decision(mlc, model_name: str, train_key: str, weights_sha256: str) -> tuple[str | None, Decision | None]:
    """The version registered from this very training result, if any, and the decision that stands for it. The
    version's gate tags are written again when a kill after the ledger entry left them out."""
    version = prior_version(mlc, model_name, train_key, weights_sha256)
    if version is None:
        return None, None
    chain = ledger.load_chain(mlc, model_name)
    entry = gate_entry(chain, version)
    if entry is not None and TAG_GATE not in (mlc.get_model_version(model_name, version).tags or {}):
        tag_decision(mlc, model_name, entry, decision_of(entry))
    return version, standing_decision(chain, version)


def commit_decision(
    mlc, model_name: str, version: str, decision: Decision, champion: str | None, run_id: str = "", flow_run_id: str = ""
) -> ledger.Entry:
    """The gate's decision on `version`, judged against `champion` (None: there was none): the ledger entry (the
    commit point: `standing_decision` reads it back), the aliases, then tags on the versions for people browsing
    MLflow. Raises StaleDecision when the champion moved in between."""
    action, after, _ = GATE_MOVES[decision.verdict]
    entry = move(
        mlc,
        model_name,
        action,
        version,
        f"gate: {decision.summary()}",
        after,
        expected_champion=champion,
        rules=[r.as_dict() for r in decision.results],
        run_id=run_id,
        flow_run_id=flow_run_id,
    )
    fault_point(AFTER_ALIASES)
    tag_decision(mlc, model_name, entry, decision)
    return entry


def tag_decision(mlc, model_name: str, entry: ledger.Entry, decision: Decision) -> None:
    """The decision as tags on the versions, for people browsing MLflow (idempotent; the ledger is the record)."""
    version = entry.version
    mlc.set_model_version_tag(model_name, version, TAG_GATE_RULES, json.dumps([r.as_dict() for r in decision.results]))
    mlc.set_model_version_tag(model_name, version, TAG_GATE_REASONS, json.dumps(decision.reasons))
    mlc.set_model_version_tag(model_name, version, TAG_GATE, GATE_MOVES[decision.verdict][2])
    replaced = entry.aliases_before.get(CHAMPION)
    if decision.promote and replaced and replaced != version:
        mlc.set_model_version_tag(model_name, replaced, TAG_REPLACED_BY, version)
