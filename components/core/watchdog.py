"""Run a command that must not outlive its parent: `python -m components.core.watchdog PARENT_PID -- CMD ...`.

The command runs in its own process group; when PARENT_PID goes away (even by SIGKILL, which no handler in the
parent sees), the watchdog terminates the whole group, then kills it, and exits. ganops starts its temporary
Prefect server this way, so a killed `ganops run` leaves no server listening behind it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from components.core.processes import alive, stop_group


def _stop_then_exit(pid: int, code: int) -> Callable[..., None]:
    """A signal handler that stops the process group led by `pid`, then exits with `code`."""

    def handler(*_: object) -> None:
        stop_group(pid)
        sys.exit(code)

    return handler


def watch(parent: int, command: list[str], poll: float = 0.5) -> int:
    """Run `command` until it exits (returning its code) or `parent` dies (stopping it, returning 1)."""
    child = subprocess.Popen(command, start_new_session=True)
    # The child has its own session, so a terminal's Ctrl-C reaches only this process: pass both on.
    signal.signal(signal.SIGTERM, _stop_then_exit(child.pid, 143))
    signal.signal(signal.SIGINT, _stop_then_exit(child.pid, 130))
    while True:
        code = child.poll()
        if code is not None:
            return code
        if not alive(parent) or os.getppid() != parent:
            stop_group(child.pid)
            child.wait()
            return 1
        time.sleep(poll)


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: python -m components.core.watchdog PARENT_PID -- COMMAND ...")
    sys.exit(watch(int(sys.argv[1]), sys.argv[3:]))
