"""The gate's decision from configured rules: the old policy's table still holds, approval, config errors."""

import math

import pytest

from components.config import GateConfig
from components.core.errors import ConfigError
from components.presets import load_config
from components.promotion.gate import AWAIT_APPROVAL, PROMOTE, REJECT, decide, format_rules
from components.promotion.rules import Evidence

# The keys the gate had before gate.rules still mean what they meant.
POLICY = GateConfig(fid_ceiling=20.0, min_improvement=0.5)


def evidence(candidate, champion=None, valid=True, floor=5.0):
    return Evidence(
        {"fid_domain": candidate, "fid_domain_real_split": floor, "infra_max_abs_diff_torchscript": 1e-7, "infra_max_abs_diff_onnx": 1e-7},
        None if champion is None else {"fid_domain": champion},
        valid,
    )


@pytest.mark.parametrize(
    "candidate,champion,valid,promote,reason",
    [
        (10.0, None, True, True, "no champion yet"),  # first model: ceiling alone
        (25.0, None, True, False, "is not below 20"),  # over the ceiling
        (20.0, None, True, False, "is not below 20"),  # at the ceiling is not under it
        (10.0, 12.0, True, True, "beats the champion"),  # better by more than the margin
        (11.8, 12.0, True, False, "does not beat"),  # better, but within the margin
        (12.0, 12.0, True, False, "does not beat"),  # a tie keeps the champion
        (13.0, 12.0, True, False, "does not beat"),  # worse
        (10.0, 12.0, False, False, "data validation failed"),  # bad data never promotes
        (math.nan, None, True, False, "not finite"),
        (math.inf, 12.0, True, False, "not finite"),
    ],
)
def test_decision_table(candidate, champion, valid, promote, reason):
    decision = decide(evidence(candidate, champion, valid), POLICY)
    assert decision.promote is promote
    assert any(reason in r for r in decision.reasons), decision.reasons
    assert [r.name for r in decision.results] == ["validation_passed", "beats_champion", "infra_valid", "ceiling"]


def test_default_rules_are_relative_to_the_datas_own_floor():
    """4 x the real-vs-real FID: about the old absolute 20 on digits (floor 5.0), and passable on data whose
    floor is 34 (32x32 RGB), where an absolute 20 never is."""
    digits = load_config("digits").gate
    assert decide(evidence(19.9, floor=5.0), digits).promote and not decide(evidence(20.1, floor=5.0), digits).promote
    assert decide(evidence(60.0, floor=34.0), GateConfig()).promote
    assert not decide(evidence(60.0, floor=34.0), GateConfig(fid_ceiling=20.0)).promote


def test_approval_required_waits_only_when_every_rule_passes():
    policy = GateConfig(approval="required")
    assert decide(evidence(3.0, 4.0), policy).verdict == AWAIT_APPROVAL
    assert decide(evidence(5.0, 4.0), policy).verdict == REJECT
    assert decide(evidence(3.0, 4.0), GateConfig()).verdict == PROMOTE


def test_rules_merge_over_the_defaults_and_null_drops_one():
    gate = load_config("smoke", ["gate.rules.beats_champion=null", "gate.rules.kid={rule: ceiling, metric: kid_domain, value: 0.1}"]).gate
    assert list(gate.rules) == ["validation_passed", "relative_ceiling", "beats_champion", "infra_valid", "kid"]
    assert gate.rules["beats_champion"] is None
    assert gate.rules["kid"] == {"rule": "ceiling", "metric": "kid_domain", "value": 0.1}
    assert gate.rules["relative_ceiling"]["metric"] == "fid_domain"  # the rule's metric defaults to gate.metric
    result = decide(Evidence({"fid_domain": 3.0, "fid_domain_real_split": 5.0, "kid_domain": 0.2}, {"fid_domain": 1.0}, True), gate)
    assert [(r.name, r.passed) for r in result.results] == [
        ("validation_passed", True),
        ("relative_ceiling", True),
        ("infra_valid", False),
        ("kid", False),
    ]  # no infra numbers
    assert GateConfig.model_validate(gate.model_dump()) == gate  # a stored resolved config reads back the same


@pytest.mark.parametrize(
    "override, message",
    [
        ("gate.rules.fast={}", "gate.rules.fast: unknown rule 'fast'; choose one of validation_passed"),
        ("gate.rules.ceiling={value: high}", "gate.rules.ceiling.value must be a float, got 'high'"),
        ("gate.rules.ceiling={}", "gate.rules.ceiling (ceiling): missing a required argument: 'value'"),
        ("gate.rules.beats_champion.tolerance=1", "unexpected keyword argument 'tolerance'; its parameters: metric, min_improvement"),
        ("gate.rules=[ceiling]", "gate.rules must be a mapping"),
        ("gate.approval=maybe", "gate.approval"),
        ("gate.rules.typo=null", "gate.rules.typo: null drops a rule, but there is no rule 'typo' to drop"),
        ("gate.rules.x={rule: [ceiling]}", "gate.rules.x: unknown rule ['ceiling']"),
        ("gate.rules.beats_champion.min_improvement=-1", "gate.rules.beats_champion.min_improvement must be a finite number >= 0"),
        ("gate.rules.ceiling={value: .nan}", "gate.rules.ceiling.value must be a finite number >= 0"),
        ("gate.rules.relative_ceiling.metric=fid_inception", "fid_inception and the floor fid_domain_real_split come from different"),
    ],
)
def test_bad_rules_name_the_key(override, message):
    with pytest.raises(ConfigError, match=None) as err:
        load_config("digits", [override])
    assert message in str(err.value), str(err.value)


def test_rules_print_as_a_table():
    text = format_rules(decide(evidence(25.0, 4.0), GateConfig()).results)
    lines = text.splitlines()
    assert lines[0].split() == ["rule", "result", "value", "threshold", "message"]
    assert lines[2].split()[:2] == ["relative_ceiling", "FAIL"] and "20.00" in lines[2]
