"""Gate rules: each rule's table of cases, and the paired bootstrap behind `significant`."""

import math

import pytest

from components.promotion.rules import RULES, Evidence, RuleSpec, judge

E = lambda cand, champ=None, valid=True: Evidence(cand, champ, valid)  # noqa: E731


@pytest.mark.parametrize(
    "rule, params, cand, champ, passed",
    [
        ("validation_passed", {}, {}, None, True),
        ("ceiling", {"metric": "fid_domain", "value": 20}, {"fid_domain": 19.9}, None, True),
        ("ceiling", {"metric": "fid_domain", "value": 20}, {"fid_domain": 20.0}, None, False),
        ("ceiling", {"metric": "fid_domain", "value": 20}, {"fid_domain": math.nan}, None, False),
        ("ceiling", {"metric": "fid_domain", "value": 20}, {}, None, False),
        ("floor", {"metric": "precision_domain", "value": 0.5}, {"precision_domain": 0.5}, None, True),
        ("floor", {"metric": "precision_domain", "value": 0.5}, {"precision_domain": 0.49}, None, False),
        (
            "relative_ceiling",
            {"metric": "fid_domain", "factor": 3, "floor_metric": "fid_domain_real_split"},
            {"fid_domain": 14.9, "fid_domain_real_split": 5.0},
            None,
            True,
        ),
        (
            "relative_ceiling",
            {"metric": "fid_domain", "factor": 3, "floor_metric": "fid_domain_real_split"},
            {"fid_domain": 15.0, "fid_domain_real_split": 5.0},
            None,
            False,
        ),
        ("beats_champion", {"metric": "fid_domain"}, {"fid_domain": 4.0}, None, True),
        ("beats_champion", {"metric": "fid_domain"}, {"fid_domain": 4.0}, {"fid_domain": 4.0}, False),
        ("beats_champion", {"metric": "fid_domain", "min_improvement": 0.5}, {"fid_domain": 3.4}, {"fid_domain": 4.0}, True),
        ("beats_champion", {"metric": "fid_domain", "min_improvement": 0.5}, {"fid_domain": 3.6}, {"fid_domain": 4.0}, False),
        ("no_regression", {"metric": "fid_domain", "tolerance": 0.2}, {"fid_domain": 4.2}, {"fid_domain": 4.0}, True),
        ("no_regression", {"metric": "fid_domain", "tolerance": 0.2}, {"fid_domain": 4.3}, {"fid_domain": 4.0}, False),
        ("beats_champion", {"metric": "fid_inception"}, {"fid_inception": 4.0}, {"fid_domain": 9.0}, False),  # champion lacks it
        ("no_regression", {"metric": "fid_domain"}, {"fid_domain": 4.0}, None, True),
        ("per_class_ceiling", {"metric": "fid_domain", "value": 10}, {"fid_domain_class_0": 3.0, "fid_domain_class_1": 9.9}, None, True),
        ("per_class_ceiling", {"metric": "fid_domain", "value": 10}, {"fid_domain_class_0": 3.0, "fid_domain_class_1": 30.0}, None, False),
        ("per_class_ceiling", {"metric": "fid_domain", "value": 10}, {"fid_domain": 3.0}, None, False),
        (
            "infra_valid",
            {},
            {"infra_max_abs_diff_torchscript": 3e-7, "infra_ms_batch1_torchscript": 0.4, "infra_max_abs_diff_onnx": 2e-8},
            None,
            True,
        ),
        ("infra_valid", {"tolerance": 1e-6}, {"infra_max_abs_diff_torchscript": 3e-7, "infra_max_abs_diff_onnx": 3e-5}, None, False),
        ("infra_valid", {}, {"infra_max_abs_diff_torchscript": math.inf, "infra_max_abs_diff_onnx": 0.0}, None, False),  # did not run
        ("infra_valid", {}, {"infra_max_abs_diff_torchscript": 3e-7}, None, False),  # no ONNX check recorded
        ("infra_valid", {}, {}, None, False),  # never validated
    ],
)
def test_rule_table(rule, params, cand, champ, passed):
    result = RULES[rule](E(cand, champ), **params)
    assert result.passed is passed and result.name == rule and result.message


def test_judge_keeps_every_result_in_order():
    results = judge(
        E({"fid_domain": 3.0}, {"fid_domain": 4.0}, valid=False),
        [
            RuleSpec("validation_passed"),
            RuleSpec("ceiling", {"metric": "fid_domain", "value": 20}),
            RuleSpec("beats_champion", {"metric": "fid_domain"}),
        ],
    )
    assert [(r.name, r.passed) for r in results] == [("validation_passed", False), ("ceiling", True), ("beats_champion", True)]


@pytest.mark.parametrize(
    "champ, paired, passed",
    [
        (None, {}, True),  # first model
        ({"fid_domain": 4.0}, {"fid_diff_domain": -1.0, "fid_diff_ci_high_domain": -0.2}, True),
        ({"fid_domain": 4.0}, {"fid_diff_domain": -0.1, "fid_diff_ci_high_domain": 0.3}, False),  # within noise
        ({"fid_domain": 4.0}, {}, False),  # no paired bootstrap
    ],
)
def test_significant(champ, paired, passed):
    result = RULES["significant"](Evidence({"fid_domain": 3.0}, champ, True, paired))
    assert result.passed is passed and result.message


def test_paired_bootstrap_sees_through_shared_noise():
    """Two generators from the same latents: the paired interval of the difference is far narrower than the two
    separate intervals, so a small real improvement is significant paired and not unpaired."""
    import numpy as np

    from components.evaluation.extra import bootstrap_fid, paired_bootstrap_fid

    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 8))
    z = rng.normal(size=(400, 8))
    better, worse = z * 1.0, z * 1.15  # same latents, the second a little too spread
    paired = paired_bootstrap_fid(real, better, worse, rounds=50, seed=1)
    assert paired["fid_diff_ci_high"] < 0  # better, beyond the noise
    assert (
        paired["fid_diff_ci_high"] - paired["fid_diff_ci_low"]
        < (a := bootstrap_fid(real, better, 50, seed=1))["fid_ci_high"] - a["fid_ci_low"]
    )
    a, b = bootstrap_fid(real, better, 50, seed=1), bootstrap_fid(real, worse, 50, seed=1)
    assert a["fid_ci_high"] > b["fid_ci_low"]  # the unpaired intervals overlap: noise, on their own
    same = paired_bootstrap_fid(real, better, better, rounds=20, seed=1)
    assert same["fid_diff"] == 0 and same["fid_diff_ci_low"] <= 0 <= same["fid_diff_ci_high"]
