"""Gate rules as code: each rule a pure function of the evidence and its parameters, returning its own result.

A new rule is one function and one `@RULES.register("name")` line; `gate.rules` in the config names the rules to
apply with their parameters (checked against the function's signature when the config loads), and the decision keeps
every rule's result: on the version, in the ledger, printed by the CLI. Lower is better for FID and KID; a rule on a
missing or non-finite metric fails and says so.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from components.core.names import (
    DOMAIN,
    FID_DOMAIN_REAL_SPLIT,
    INCEPTION,
    INFRA_MAX_ABS_DIFF,
    INFRA_MS_BATCH1,
    INFRA_MS_BATCH64,
    PAIRED_DIFF,
    PAIRED_DIFF_CI_HIGH,
    SERVING_RUNTIMES,
    metric_name,
)
from components.core.plugins import Registry


@dataclass(frozen=True)
class Evidence:
    """What the rules judge: the candidate's metrics, the champion's (re-scored on the same data, extractor and
    latents) or None, whether the data passed validation, and the paired bootstrap of candidate minus champion
    (`fid_diff_domain`, its interval) when both were sampled from the same latents."""

    candidate: dict[str, float]
    champion: dict[str, float] | None
    validation_passed: bool
    paired: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleResult:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RuleSpec:
    """One entry of `gate.rules`: a registered rule, its parameters, and the entry's name (the rule's by default;
    another name lets one rule apply twice, e.g. `kid_ceiling: {rule: ceiling, metric: kid_domain, value: 0.05}`)."""

    rule: str
    params: dict = field(default_factory=dict)
    name: str = ""


Rule = Callable[..., RuleResult]
RULES: Registry[Rule] = Registry("gate rule")


def _metric(evidence: Evidence, metric: str, name: str) -> float | RuleResult:
    value = evidence.candidate.get(metric)
    if value is None or not math.isfinite(value):
        return RuleResult(name, False, value, None, f"{metric} is missing or not finite ({value})")
    return value


@RULES.register("validation_passed")
def validation_passed(evidence: Evidence) -> RuleResult:
    """The dataset the candidate trained on passed data validation."""
    ok = evidence.validation_passed
    return RuleResult("validation_passed", ok, None, None, "data validation passed" if ok else "data validation failed")


@RULES.register("ceiling")
def ceiling(evidence: Evidence, metric: str, value: float) -> RuleResult:
    """metric < value (lower is better: FID, KID)."""
    got = _metric(evidence, metric, "ceiling")
    if isinstance(got, RuleResult):
        return got
    ok = got < value
    return RuleResult("ceiling", ok, got, value, f"{metric} {got:.4f} {'<' if ok else 'is not below'} {value:g}")


@RULES.register("floor")
def floor(evidence: Evidence, metric: str, value: float) -> RuleResult:
    """metric >= value (higher is better: precision, recall, classifier accuracy)."""
    got = _metric(evidence, metric, "floor")
    if isinstance(got, RuleResult):
        return got
    ok = got >= value
    return RuleResult("floor", ok, got, value, f"{metric} {got:.4f} {'>=' if ok else 'is below'} {value:g}")


@RULES.register("relative_ceiling")
def relative_ceiling(evidence: Evidence, metric: str, factor: float, floor_metric: str = FID_DOMAIN_REAL_SPLIT) -> RuleResult:
    """metric < factor x the dataset's own real-vs-real value (a bound that works on any dataset)."""
    got = _metric(evidence, metric, "relative_ceiling")
    if isinstance(got, RuleResult):
        return got
    base = evidence.candidate.get(floor_metric)
    if base is None or not math.isfinite(base):
        return RuleResult("relative_ceiling", False, got, None, f"{floor_metric} (the real-vs-real floor) is missing")
    bound = factor * base
    ok = got < bound
    return RuleResult(
        "relative_ceiling",
        ok,
        got,
        bound,
        f"{metric} {got:.4f} {'<' if ok else 'is not below'} {factor:g} x {floor_metric} {base:.4f} = {bound:.4f}",
    )


def _against_champion(evidence: Evidence, metric: str, name: str) -> tuple[float, float | None] | RuleResult:
    """(candidate's value, champion's or None when there is no champion yet), or the failed result when either
    is missing."""
    got = _metric(evidence, metric, name)
    if isinstance(got, RuleResult):
        return got
    if evidence.champion is None:
        return got, None
    theirs = evidence.champion.get(metric)
    if theirs is None or not math.isfinite(theirs):
        return RuleResult(
            name,
            False,
            got,
            None,
            f"the champion has no {metric} comparable with this version's ({theirs}): re-score both on one dataset with `ganops run`",
        )
    return got, theirs


@RULES.register("beats_champion")
def beats_champion(evidence: Evidence, metric: str, min_improvement: float = 0.0) -> RuleResult:
    """metric < champion's - min_improvement (strictly lower when 0: a tie keeps the champion); no champion passes."""
    pair = _against_champion(evidence, metric, "beats_champion")
    if isinstance(pair, RuleResult):
        return pair
    got, theirs = pair
    if theirs is None:
        return RuleResult("beats_champion", True, got, None, "no champion yet")
    ok = got < theirs - min_improvement
    return RuleResult(
        "beats_champion",
        ok,
        got,
        theirs - min_improvement,
        f"{metric} {got:.4f} {'beats' if ok else 'does not beat'} the champion's {theirs:.4f} by more than {min_improvement:g}",
    )


@RULES.register("no_regression")
def no_regression(evidence: Evidence, metric: str, tolerance: float = 0.0) -> RuleResult:
    """metric <= champion's + tolerance: allowed to tie or slip a little, never more."""
    pair = _against_champion(evidence, metric, "no_regression")
    if isinstance(pair, RuleResult):
        return pair
    got, theirs = pair
    if theirs is None:
        return RuleResult("no_regression", True, got, None, "no champion yet")
    ok = got <= theirs + tolerance
    return RuleResult(
        "no_regression", ok, got, theirs + tolerance, f"{metric} {got:.4f} {'<=' if ok else 'regresses past'} {theirs + tolerance:.4f}"
    )


@RULES.register("significant")
def significant(evidence: Evidence) -> RuleResult:
    """The candidate's domain FID is lower than the champion's beyond sampling noise: the upper end of the 95%
    interval of (candidate - champion), from a paired bootstrap (same latents, same real resamples), is below 0."""
    if evidence.champion is None:
        return RuleResult("significant", True, None, None, "no champion yet")
    high = evidence.paired.get(metric_name(PAIRED_DIFF_CI_HIGH, DOMAIN))
    if high is None or not math.isfinite(high):
        return RuleResult(
            "significant",
            False,
            None,
            0.0,
            "no paired bootstrap against the champion (evaluate.bootstrap_rounds is 0, or it was judged against another champion)",
        )
    diff = evidence.paired.get(metric_name(PAIRED_DIFF, DOMAIN), math.nan)
    ok = high < 0
    return RuleResult(
        "significant",
        ok,
        high,
        0.0,
        f"candidate - champion fid_domain {diff:+.4f}, 95% upper bound {high:+.4f} "
        + ("< 0" if ok else "is not below 0: the improvement is within sampling noise"),
    )


@RULES.register("infra_valid")
def infra_valid(evidence: Evidence, tolerance: float = 1e-4) -> RuleResult:
    """Every serving runtime (SERVING_RUNTIMES: TorchScript, ONNX), loaded from the export in a fresh process without ganops,
    reproduces PyTorch's golden images within `tolerance` (max abs difference, fp32); timings go in the message."""
    recorded = {r: evidence.candidate.get(metric_name(INFRA_MAX_ABS_DIFF, r)) for r in SERVING_RUNTIMES}
    missing = [r for r, d in recorded.items() if d is None]
    diffs = {r: d for r, d in recorded.items() if d is not None}
    if missing:
        return RuleResult("infra_valid", False, None, tolerance, f"no infra validation of {', '.join(missing)} recorded for this version")
    worst = max(diffs.values(), key=lambda d: d if math.isfinite(d) else math.inf)
    ok = all(math.isfinite(d) and d <= tolerance for d in diffs.values())
    parts = [
        f"{r} {d:.2e} (batch 1 {evidence.candidate.get(metric_name(INFRA_MS_BATCH1, r), math.nan):.2f} ms, "
        f"batch 64 {evidence.candidate.get(metric_name(INFRA_MS_BATCH64, r), math.nan):.2f} ms)"
        for r, d in diffs.items()
    ]
    return RuleResult(
        "infra_valid",
        ok,
        worst,
        tolerance,
        "max |diff| from PyTorch in a fresh process: " + ", ".join(parts) + (" <= " if ok else " not all within ") + f"{tolerance:g}",
    )


@RULES.register("per_class_ceiling")
def per_class_ceiling(evidence: Evidence, metric: str, value: float) -> RuleResult:
    """Every `<metric>_class_<label>` below value: no class dropped (conditional generators)."""
    prefix = f"{metric}_class_"
    per_class = {k.removeprefix(prefix): v for k, v in evidence.candidate.items() if k.startswith(prefix)}
    if not per_class:
        return RuleResult("per_class_ceiling", False, None, value, f"no per-class {metric} recorded (not a conditional model?)")
    worst_label, worst = max(per_class.items(), key=lambda kv: kv[1] if math.isfinite(kv[1]) else math.inf)
    ok = all(math.isfinite(v) and v < value for v in per_class.values())
    return RuleResult(
        "per_class_ceiling", ok, worst, value, f"worst class {worst_label}: {metric} {worst:.4f} {'<' if ok else 'is not below'} {value:g}"
    )


def judge(evidence: Evidence, specs: list[RuleSpec]) -> list[RuleResult]:
    """Every rule's result, in the configured order, under the configured names."""
    return [replace(RULES[spec.rule](evidence, **spec.params), name=spec.name or spec.rule) for spec in specs]


_TYPES = {"float": (int, float), "str": (str,)}
EXTRACTOR_NAMES = (DOMAIN, INCEPTION)


def resolve_rule(name: str, params: dict, default_metric: str) -> dict:
    """`gate.rules.<name>` checked against its rule function: `rule` (default: the entry's name) and `metric`
    (default: gate.metric) filled in. Raises ValueError naming the entry and what is wrong with it."""
    kind = params.get("rule", name)
    if not isinstance(kind, str) or kind not in RULES:
        raise ValueError(f"gate.rules.{name}: unknown rule {kind!r}; choose one of {', '.join(RULES)} (or set rule: to one)")
    signature = inspect.signature(RULES[kind])
    args = {k: v for k, v in params.items() if k != "rule"}
    if "metric" in signature.parameters and "metric" not in args:
        args["metric"] = default_metric
    accepted = ", ".join(list(signature.parameters)[1:]) or "none"
    try:
        signature.bind(None, **args)
    except TypeError as e:
        raise ValueError(f"gate.rules.{name} ({kind}): {e}; its parameters: {accepted}") from None
    for key, value in args.items():
        annotation = str(signature.parameters[key].annotation)
        types = _TYPES.get(annotation, ())
        if types and (isinstance(value, bool) or not isinstance(value, types)):
            raise ValueError(f"gate.rules.{name}.{key} must be a {annotation}, got {value!r}")
        if annotation == "float" and not (math.isfinite(value) and value >= 0):  # thresholds, margins, factors
            raise ValueError(f"gate.rules.{name}.{key} must be a finite number >= 0, got {value!r}")
    if kind == "relative_ceiling" and _extractor(args["metric"]) != _extractor(args.get("floor_metric", FID_DOMAIN_REAL_SPLIT)):
        raise ValueError(
            f"gate.rules.{name}: {args['metric']} and the floor {args.get('floor_metric', FID_DOMAIN_REAL_SPLIT)} "
            "come from different feature extractors and are not on one scale"
        )
    return {"rule": kind, **args}


def _extractor(metric: str) -> str:
    """The feature extractor a metric name carries (fid_domain_real_split -> domain); '' when it names none."""
    return next((part for part in metric.split("_") if part in EXTRACTOR_NAMES), "")


def rule_specs(rules: dict[str, dict | None]) -> list[RuleSpec]:
    """The enabled entries of a resolved `gate.rules` mapping (null drops a rule), in order."""
    return [RuleSpec(p["rule"], {k: v for k, v in p.items() if k != "rule"}, name) for name, p in rules.items() if p is not None]
