"""Promotion gate: a pure decision over plain values. Side effects (aliases, tags) live in registry/models.py."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from components.config import GateConfig
from components.core.names import interval_names


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def ci_high_key(metric: str) -> str:
    """The name of the bootstrap upper bound that goes with a FID metric: fid_domain -> fid_ci_high_domain."""
    return interval_names(metric)[1]


def decide_promotion(candidate_fid: float, champion_fid: float | None, validation_passed: bool, policy: GateConfig,
                     candidate_ci_high: float | None = None) -> Decision:
    """Promote when data validation passed, FID is under the ceiling, and (if a champion exists) the candidate
    beats the champion's FID by more than `policy.min_improvement` (strictly lower when it is 0).
    Lower FID is better; a tie keeps the champion. With `policy.require_significant`, the upper bound of the
    candidate's bootstrap interval must also lie below the champion's FID, so noise is not taken for progress.

    Returns a Decision whose reasons say why, pass or fail.
    """
    failed, passed = [], []
    if validation_passed:
        passed.append("data validation passed")
    else:
        failed.append("data validation failed")
    if not math.isfinite(candidate_fid):
        failed.append(f"{policy.metric} is not finite ({candidate_fid})")
    elif candidate_fid < policy.fid_ceiling:
        passed.append(f"{policy.metric} {candidate_fid:.4f} < ceiling {policy.fid_ceiling:g}")
    else:
        failed.append(f"{policy.metric} {candidate_fid:.4f} is not below the ceiling {policy.fid_ceiling:g}")
    if champion_fid is None:
        passed.append("no champion yet: the ceiling alone decides")
    elif math.isfinite(candidate_fid) and candidate_fid < champion_fid - policy.min_improvement:
        passed.append(f"{policy.metric} {candidate_fid:.4f} beats the champion's {champion_fid:.4f} by more than {policy.min_improvement:g}")
    else:
        failed.append(f"{policy.metric} {candidate_fid:.4f} does not beat the champion's {champion_fid:.4f} by more than {policy.min_improvement:g}")
    if policy.require_significant and champion_fid is not None:
        if candidate_ci_high is None:
            failed.append("require_significant is set but there is no bootstrap interval (evaluate.bootstrap_rounds is 0)")
        elif candidate_ci_high < champion_fid:
            passed.append(f"the interval's upper bound {candidate_ci_high:.4f} is below the champion's {champion_fid:.4f}")
        else:
            failed.append(f"the interval's upper bound {candidate_ci_high:.4f} is not below the champion's {champion_fid:.4f}: "
                          "the improvement is within sampling noise")
    return Decision(promote=not failed, reasons=failed or passed)
