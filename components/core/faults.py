"""Test-only fault points: `GANOPS_FAULT=<point>` makes the process kill itself with SIGKILL when it reaches that
point, so crash tests stop a real `ganops run` at an exact step of the promotion sequence. Unset, a point costs one
environment lookup."""

from __future__ import annotations

import os
import signal

FAULT_ENV = "GANOPS_FAULT"
# The points, in the order a retrain reaches them.
AFTER_REGISTER, DURING_EXPORT, AFTER_EXPORT, AFTER_LEDGER, AFTER_ALIASES = (
    "after_register",
    "during_export",
    "after_export",
    "after_ledger",
    "after_aliases",
)


def fault_point(name: str) -> None:
    """SIGKILL this process when GANOPS_FAULT names this point (nothing runs after: no cleanup, no finally)."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
