"""Progress of long work: a tqdm bar with ETA on a terminal, printed lines with the rate and the time left
elsewhere (a Prefect worker's log, CI), so a run shows that it advances wherever it runs."""

from __future__ import annotations

import sys
import time


class PrintedProgress:
    """Progress for logs: a printed line after the first update (an early estimate of the time left) and then every
    `every` units with the rate and the time left, so a Prefect worker's log (and the flow run's, which captures
    prints) shows the work advance. `initial` units were done before (a resumed run): they count towards the total,
    not the rate."""

    def __init__(
        self,
        total: int,
        every: int | None = None,
        clock=time.monotonic,
        label: str = "train step",
        unit: str = "steps",
        stderr: bool = False,
        initial: int = 0,
    ):
        self.total, self.done, self.initial, self.clock, self.label, self.unit, self.stderr = (
            total,
            initial,
            initial,
            clock,
            label,
            unit,
            stderr,
        )
        self.every = every or max(1, total // 20)
        self.started = clock()

    def update(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if before == self.initial or self.done // self.every > before // self.every or self.done == self.total:
            print(
                progress_line(self.done, self.total, self.clock() - self.started, self.label, self.unit, self.initial),
                flush=True,
                file=sys.stderr if self.stderr else sys.stdout,
            )

    def close(self) -> None:
        pass


def progress_line(done: int, total: int, seconds: float, label: str = "train step", unit: str = "steps", initial: int = 0) -> str:
    """'train step 150/3000 (5%), 12.3 steps/s, 3m52s left' (the rate of the work since `initial`)."""
    rate = (done - initial) / seconds if seconds > 0 else 0.0
    left = (total - done) / rate if rate > 0 else 0.0
    return f"{label} {done}/{total} ({done / total:.0%}), {rate:.1f} {unit}/s, {int(left // 60)}m{int(left % 60):02d}s left"


def progress_bar(total: int, label: str = "train step", unit: str = "step", stderr: bool = False, initial: int = 0):
    """A tqdm bar with ETA on a terminal; printed lines elsewhere (logs, workers, CI; stdout unless `stderr`).
    `initial` units were done before (a resumed run)."""
    if not sys.stderr.isatty():
        return PrintedProgress(total, label=label, unit=f"{unit}s", stderr=stderr, initial=initial)
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit=unit, dynamic_ncols=True, initial=initial)
