"""Facts about local processes, from /proc: is a pid alive, is it still the same process that was recorded, and how
much memory did a command take at its peak."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
        return None


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot): with the pid, it names one process even after pid reuse."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def pid_namespace() -> str:
    """This boot and this process's pid namespace: pids (and start ticks) mean the same process only where this is
    the same, which a hostname alone does not tell (two containers may share one)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return "unknown"


def same_process_alive(pid: int, ticks: int | None) -> bool:
    """Whether the process recorded as (pid, start ticks) is still running."""
    return alive(pid) and (ticks is None or start_ticks(pid) == ticks)


def stop_group(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group led by pid, then SIGKILL what is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)


def peak_rss_mb(cmd: list[str], env: dict, cwd: Path | str) -> tuple[float, str, str, int]:
    """Run `cmd`: (its peak resident set in MB, stdout, stderr, exit code). The peak is the kernel's high-water mark
    of the process's own memory (VmHWM), read every 20 ms until it exits; getrusage's ru_maxrss would also count the
    parent's resident set at fork, which exec carries over."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        peak = 0
        while child.poll() is None:
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
            except OSError:  # exiting: the last reading stands
                status = ""
            found = re.search(r"VmHWM:\s+(\d+) kB", status)
            if found:  # a zombie's status has no VmHWM line: the last reading stands
                peak = max(peak, int(found.group(1)))
            time.sleep(0.02)
        out.seek(0), err.seek(0)
        return peak / 1024, out.read().decode(), err.read().decode(), child.returncode
