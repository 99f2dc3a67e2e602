"""The audit's `run records` link and the note a reaped run leaves on its versions, as pure functions."""

import pytest

from components.lineage.records import check_run_records, reaped_note
from components.promotion.ledger import Chain, next_entry

A, B = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    "digests, status, reaped, note, expected, words",
    [
        ({"gate/decision.json": (A, A), "summary.json": (B, B)}, "FINISHED", None, None, "PASS", "summary.json sha256 bbbb"),
        ({"gate/decision.json": (B, A), "summary.json": (B, B)}, "FINISHED", None, None, "FAIL", "gate/decision.json has sha256 bbbb"),
        ({"gate/decision.json": (None, A)}, "FINISHED", None, None, "FAIL", "missing from the run's artifacts"),
        ({"gate/decision.json": (A, None), "summary.json": (B, None)}, "FINISHED", None, None, "SKIP", "not recorded"),
        (
            {"gate/decision.json": (A, A), "summary.json": (None, None)},
            "FAILED",
            "process 7 on h is gone",
            "it stands",
            "WARN",
            "process 7",
        ),
        ({"gate/decision.json": (A, A)}, "FAILED", None, None, "WARN", "no note on the version says why"),
        ({"gate/decision.json": (B, A)}, "FAILED", "gone", "it stands", "FAIL", "has sha256"),  # a FAILED run's records still count
    ],
)
def test_the_run_records_link(digests, status, reaped, note, expected, words):
    got, evidence = check_run_records(digests, status, reaped, note)
    assert got == expected and words in evidence, evidence
    if reaped and expected == "WARN":
        assert note in evidence and "was marked FAILED after its process died" in evidence


def test_the_note_says_whether_the_ledger_committed_the_version_before_the_crash():
    entry = next_entry(
        Chain([], []),
        actor="ci",
        action="gate_promote",
        model="m",
        version="3",
        aliases_before={},
        aliases_after={"champion": "3"},
        reason="r",
    )
    assert "ledger entry #1 (gate_promote)" in reaped_note("3", entry, "process 9 is gone") and "stands" in reaped_note("3", entry, "x")
    assert "no alias" in reaped_note("3", None, "process 9 is gone") and "process 9 is gone" in reaped_note("3", None, "process 9 is gone")
