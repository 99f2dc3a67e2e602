"""Promotion gate: a pure decision over plain values, from the configured rules (promotion.rules). Side effects
(the ledger entry, aliases, tags) live in promotion.moves."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.config import APPROVAL_REQUIRED, GateConfig
from components.promotion.rules import Evidence, RuleResult, judge, rule_specs

PROMOTE, REJECT, AWAIT_APPROVAL = "promote", "reject", "await_approval"


@dataclass(frozen=True)
class Decision:
    """The verdict and every rule's result; `note` says where a decision that was not judged now came from."""

    verdict: str
    results: list[RuleResult] = field(default_factory=list)
    note: str = ""

    @property
    def promote(self) -> bool:
        return self.verdict == PROMOTE

    @property
    def passed(self) -> bool:
        """Every rule passed (the verdict may still wait for approval)."""
        return all(r.passed for r in self.results)

    @property
    def reasons(self) -> list[str]:
        """The failed rules' messages, or every message when all passed."""
        failed = [f"{r.name}: {r.message}" for r in self.results if not r.passed]
        return ([self.note] if self.note else []) + (failed or [f"{r.name}: {r.message}" for r in self.results])

    def summary(self) -> str:
        """One line: how many rules passed, or which failed."""
        failed = [r.name for r in self.results if not r.passed]
        return f"failed: {', '.join(failed)}" if failed else f"all {len(self.results)} rules passed"

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "promote": self.promote, "reasons": self.reasons, "rules": [r.as_dict() for r in self.results]}


def decide(evidence: Evidence, policy: GateConfig) -> Decision:
    """Judge `evidence` by `policy.rules`: all pass -> promote (or await approval when `policy.approval` is
    required); any fails -> reject. Lower FID is better; a tie keeps the champion (beats_champion is strict)."""
    results = judge(evidence, rule_specs(policy.rules))
    if not all(r.passed for r in results):
        return Decision(REJECT, results)
    return Decision(AWAIT_APPROVAL if policy.approval == APPROVAL_REQUIRED else PROMOTE, results)


def format_rules(results: list[RuleResult]) -> str:
    """The rule results as an aligned text table (the CLI prints it)."""

    def num(x: float | None) -> str:
        return "" if x is None else f"{x:.4g}"

    rows = [("rule", "result", "value", "threshold", "message")] + [
        (r.name, "pass" if r.passed else "FAIL", num(r.value), num(r.threshold), r.message) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)), row[4]]).rstrip() for row in rows)
