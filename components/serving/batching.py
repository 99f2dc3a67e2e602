"""Concurrent requests batched into one forward pass.

The batcher lives on the server's event loop and runs one batch at a time: on the loop itself up to INLINE_ROWS
latent rows, in a thread of its own above (so the loop keeps reading requests meanwhile). A request
appends its latents to the pending list; when no forward pass is running, a batch is launched on the loop's next
turn (or after `wait_ms`), so every request whose body arrived in the same turn of the loop goes in it, and every
request that arrives while a forward pass runs goes in the next one, up to `max_rows` latent rows, for the same
loaded export. A request accepted before a swap (`--follow`) is answered by the export it was accepted against.
Only an export whose golden latents give bitwise the same images alone as in a batch is batched freely
(`Served.batch_invariant`, checked at load, as ONNX Runtime's exports are), so batching never changes an answer.
An export whose images are the same bits only from some batch size on (`Served.min_rows`, also checked at load:
the TorchScript exports here, whose last convolution sums in another order at batch 1 than from 2 on, 4.7e-10 apart)
always runs forward passes of at least that many rows (zeros padded), alone or batched, so a request gets the same
bits either way. Other exports run each request on its own.

Before `min_rows`, the default TorchScript export failed the bitwise check and was never batched: 16 closed-loop
one-image clients on 2 cores gave 4,957 forward passes for 4,957 requests; now they share them (about 6 requests a
pass in a cProfile'd run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from components.serving.runtime import Served

log = logging.getLogger("ganops.serve")
# Batches of up to this many latent rows run on the event loop itself (well under a millisecond on the exports here:
# 0.18 ms at batch 1, 0.64 ms at 64); larger ones in the forward-pass thread, so the loop keeps reading requests.
INLINE_ROWS = 64


@dataclass
class Job:
    served: Served
    z: np.ndarray
    labels: np.ndarray | None
    future: asyncio.Future


def forward_batch(served: Served, jobs: list[Job]) -> np.ndarray:
    """The images (rows, C, H, W) float32 for the jobs' latents (and labels), in order, in one forward pass; for an
    export whose images are the same bits only from some batch size on (`Served.min_rows`), padded with zeros to at
    least that many rows, alone or batched alike."""
    z = np.concatenate([j.z for j in jobs]) if len(jobs) > 1 else jobs[0].z
    labels = None if jobs[0].labels is None else np.concatenate([j.labels for j in jobs])
    rows, padded = len(z), served.min_rows - len(z)
    if padded <= 0:
        return served.forward(z, labels)
    z = np.concatenate([z, np.zeros((padded, z.shape[1]), z.dtype)])
    labels = None if labels is None else np.concatenate([labels, np.zeros(padded, labels.dtype)])
    return served.forward(z, labels)[:rows]


class Batcher:
    def __init__(self, wait_ms: float = 0.0, max_rows: int = 1024, on_batch: Callable[[int], None] | None = None):
        self.wait_s, self.max_rows, self.on_batch = wait_ms / 1000.0, max_rows, on_batch
        self._pending: list[Job] = []
        self._busy = False  # a batch is launched or running: new requests wait for the next one
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0

    def start(self) -> Batcher:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ganops-forward")
        return self

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=False)
            self._executor = None

    def alive(self) -> bool:
        return self._executor is not None

    async def run(self, served: Served, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """The images (N, C, H, W) float32 for these latents (and labels); call on the server's event loop."""
        if self._executor is None:
            raise RuntimeError("the batcher is not running")
        loop = asyncio.get_running_loop()
        job = Job(served, z, labels, loop.create_future())
        self._pending.append(job)
        if not self._busy:
            self._busy = True
            if self.wait_s > 0:
                loop.call_later(self.wait_s, self._launch, loop)
            else:
                loop.call_soon(self._launch, loop)  # after the requests already parsed in this turn of the loop
        return await job.future

    def _take(self) -> list[Job]:
        """The next batch: the first pending request and, when its export is batch-invariant, every later one for
        the same export that fits in max_rows (others keep their place for the following batch)."""
        self._pending = [j for j in self._pending if not j.future.done()]  # a cancelled request is dropped
        if not self._pending:
            return []
        first = self._pending[0]
        batch, rows, rest = [first], len(first.z), []
        for job in self._pending[1:]:
            if (
                (first.served.batch_invariant or first.served.min_rows)
                and job.served is first.served
                and rows + len(job.z) <= self.max_rows
            ):
                batch.append(job)
                rows += len(job.z)
            else:
                rest.append(job)
        self._pending = rest
        return batch

    def _launch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._take()
        if not batch or self._executor is None:
            self._busy = False
            for job in batch:
                job.future.set_exception(RuntimeError("the batcher stopped"))
            return
        if sum(len(j.z) for j in batch) <= INLINE_ROWS:  # a thread hop would cost more than the forward pass
            done = loop.create_future()
            try:
                done.set_result(forward_batch(batch[0].served, batch))
            except Exception as e:
                done.set_exception(e)
            self._answer(loop, batch, done)
            return
        done = loop.run_in_executor(self._executor, forward_batch, batch[0].served, batch)
        done.add_done_callback(lambda f: self._answer(loop, batch, f))

    def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[Job], done: asyncio.Future) -> None:
        error = done.exception()
        if error is not None:  # answer every waiting request; the server keeps running
            log.error("forward pass of %d rows failed: %s", sum(len(j.z) for j in batch), error, exc_info=error)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
        else:
            images, start = done.result(), 0
            self.batches += 1
            if self.on_batch:
                self.on_batch(len(images))
            for job in batch:
                if not job.future.done():
                    job.future.set_result(images[start : start + len(job.z)])
                start += len(job.z)
        loop.call_soon(self._launch, loop)  # what arrived meanwhile goes next: it has waited a forward pass already
