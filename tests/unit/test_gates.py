import math

import pytest

from components.config import GateConfig
from components.promotion.gate import decide_promotion

POLICY = GateConfig(fid_ceiling=20.0, min_improvement=0.5)


@pytest.mark.parametrize(
    "candidate,champion,valid,promote,reason",
    [
        (10.0, None, True, True, "no champion yet"),          # first model: ceiling alone
        (25.0, None, True, False, "not below the ceiling"),   # over the ceiling
        (20.0, None, True, False, "not below the ceiling"),   # at the ceiling is not under it
        (10.0, 12.0, True, True, "beats the champion"),       # better by more than the margin
        (11.8, 12.0, True, False, "does not beat"),           # better, but within the margin
        (12.0, 12.0, True, False, "does not beat"),           # a tie keeps the champion
        (13.0, 12.0, True, False, "does not beat"),           # worse
        (10.0, 12.0, False, False, "data validation failed"), # bad data never promotes
        (math.nan, None, True, False, "not finite"),
        (math.inf, 12.0, True, False, "not finite"),
    ],
)
def test_decision_table(candidate, champion, valid, promote, reason):
    decision = decide_promotion(candidate, champion, valid, POLICY)
    assert decision.promote is promote
    assert any(reason in r for r in decision.reasons), decision.reasons


def test_zero_margin_needs_strict_improvement():
    policy = GateConfig(fid_ceiling=100.0, min_improvement=0.0)
    assert decide_promotion(9.99, 10.0, True, policy).promote
    assert not decide_promotion(10.0, 10.0, True, policy).promote


@pytest.mark.parametrize(
    "candidate,ci_high,champion,promote,reason",
    [
        (10.0, 11.0, 12.0, True, "upper bound 11.0000 is below"),
        (10.0, 12.5, 12.0, False, "within sampling noise"),
        (10.0, None, 12.0, False, "no bootstrap interval"),
        (10.0, None, None, True, "no champion yet"),  # the first model needs only the ceiling
    ],
)
def test_significance_policy(candidate, ci_high, champion, promote, reason):
    policy = GateConfig(fid_ceiling=20.0, require_significant=True)
    decision = decide_promotion(candidate, champion, True, policy, ci_high)
    assert decision.promote is promote and any(reason in r for r in decision.reasons), decision.reasons
