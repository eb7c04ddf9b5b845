"""Micro-batching: many concurrent requests share one model through one worker thread.

Requests queue up; the worker takes the first, waits a moment (2 ms by default) for more, and runs them as
one :meth:`~ai2text_hf.inference.Transcriber.transcribe_arrays` call (one padded forward per duration batch),
so N parallel requests cost a few model runs, not N, and never hold N copies of the activations. Requests
that arrive while the model runs are waiting in the queue and make up the next batch, so the wait can stay
short: it only has to catch requests sent at the same moment. Inference runs off the event loop: callers
get a :class:`concurrent.futures.Future`.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..decoding import CTCDecoder, DecodedUtterance
from ..inference import Transcriber


class QueueFullError(Exception):
    """More requests are waiting than the server is configured to hold."""


class WorkerClosedError(Exception):
    """The model was unloaded before the request could be queued."""


@dataclass(frozen=True)
class BatchSettings:
    """How a :class:`MicroBatcher` groups requests.

    Args:
        max_batch: requests per batch at most.
        max_wait: seconds to wait for more requests after the first one of a batch arrives.
        max_queue: requests allowed to wait; more are refused (:class:`QueueFullError`) instead of piling up.
    """

    max_batch: int = 16
    max_wait: float = 0.002
    max_queue: int = 64


@dataclass
class _Job:
    wave: np.ndarray
    decoder: CTCDecoder
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """One worker thread running a :class:`Transcriber` on batches of queued requests."""

    def __init__(self, transcriber: Transcriber, settings: BatchSettings | None = None):
        self.transcriber = transcriber
        self.settings = settings or BatchSettings()
        self.requests = 0  # served, for /models and the concurrency test
        self.batches = 0
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=self.settings.max_queue)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ai2text-batcher", daemon=True)
        self._thread.start()

    def submit(self, wave: np.ndarray, decoder: CTCDecoder) -> Future[DecodedUtterance]:
        """Queue a 16 kHz waveform; the future resolves to its transcription (word timings included)."""
        job = _Job(wave, decoder)
        with self._lock:  # a job queued here always precedes close()'s sentinel, so it is always answered
            if self._closed:
                raise WorkerClosedError("the model was unloaded")
            try:
                self._queue.put_nowait(job)
            except queue.Full as error:
                raise QueueFullError(f"{self._queue.maxsize} requests are already waiting") from error
        return job.future

    def close(self) -> None:
        """Answer every queued request, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job plus whatever is queued or arrives within ``max_wait``; True when the stop sentinel came."""
        jobs = [first]
        deadline = time.monotonic() + self.settings.max_wait
        while len(jobs) < self.settings.max_batch:
            try:
                job = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs, stop = self._collect(first)
            self._process(jobs)

    def _process(self, jobs: list[_Job]) -> None:
        by_decoder: dict[int, list[_Job]] = {}
        for job in jobs:
            by_decoder.setdefault(id(job.decoder), []).append(job)
        for group in by_decoder.values():
            try:
                decoded = self.transcriber.transcribe_arrays([j.wave for j in group], True, group[0].decoder)
            except Exception as error:  # handed to the waiting requests, whose handlers report it
                for job in group:
                    job.future.set_exception(error)
                continue
            self.batches += 1  # counted before answering, so a client that got its answer sees its request counted
            self.requests += len(group)
            for job, result in zip(group, decoded):
                job.future.set_result(result)
