"""The shared model: one worker thread gathers concurrent requests' images into one forward pass.

A request hands over its preprocessed (3, S, S) tensors and awaits a future; the worker takes what
is queued (waiting at most ``max_wait_s`` for more, never more than ``max_batch`` images), runs the
backbone once and gives each request its rows. Throughput under load approaches the batched rate.
It waits only while a request announced with ``coming()`` is still being prepared: a lone query
goes straight to the model.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

Forward = Callable[[torch.Tensor], np.ndarray]  # (B, 3, S, S) → (B, D) float32


@dataclass
class _Job:
    images: torch.Tensor  # (b, 3, S, S)
    future: Future[np.ndarray] = field(default_factory=Future)


_WAKE = _Job(torch.empty(0))  # queued when an announced request is done: not a job


class ModelBatcher:
    """Batches ``forward`` calls across threads.

    Args:
        forward: the model, (B, 3, S, S) → (B, D) numpy.
        max_batch: most images in one forward pass (one request's images are never split).
        max_wait_s: how long the first queued request waits for others to join its batch.
        on_batch: called with each forward pass's batch size (metrics).
    """

    def __init__(
        self,
        forward: Forward,
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch {max_batch} must be ≥ 1 and max_wait {max_wait_s} ≥ 0")
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._coming = 0  # requests preparing images for this model (``coming``)
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="dinosearch-model", daemon=True)
        self._thread.start()

    def submit(self, images: torch.Tensor) -> Future[np.ndarray]:
        """Queue (b, 3, S, S) images; the future gives their (b, D) features."""
        if not self._thread.is_alive():
            raise RuntimeError("the model worker has stopped")
        job = _Job(images)
        self._queue.put(job)
        return job.future

    @contextmanager
    def coming(self) -> Iterator[None]:
        """Announce a request that will ``submit`` within the block: a batch waits for it."""
        with self._count_lock:
            self._coming += 1
        try:
            yield
        finally:
            with self._count_lock:
                self._coming -= 1
            self._queue.put(_WAKE)  # a gathering batch looks again: is anyone still coming?

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the queued jobs."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if first is _WAKE:
                continue
            jobs, stop = self._gather(first)
            self._serve(jobs)
            if stop:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` and whatever joins it within ``max_wait_s``, up to ``max_batch`` images; the
        wait ends early when the queue is empty and no announced request is still preparing."""
        jobs, count = [first], len(first.images)
        deadline = time.monotonic() + self.max_wait_s
        while count < self.max_batch:
            if self._coming == 0 and self._queue.empty():
                break
            try:
                job = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            if job is _WAKE:
                continue
            if count + len(job.images) > self.max_batch:
                self._serve(jobs)  # the newcomer starts the next batch
                jobs, count = [job], len(job.images)
                deadline = time.monotonic() + self.max_wait_s
                continue
            jobs.append(job)
            count += len(job.images)
        return jobs, False

    def _serve(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            batch = torch.cat([j.images for j in live])  # (B, 3, S, S)
            features = self.forward(batch)  # (B, D)
        except Exception as e:  # every waiting request gets the error, the worker goes on
            for j in live:
                j.future.set_exception(e)
            return
        if self.on_batch is not None:
            self.on_batch(len(batch))
        start = 0
        for j in live:
            j.future.set_result(features[start : start + len(j.images)])
            start += len(j.images)
