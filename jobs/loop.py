"""Background threads: pollers that run a unit of work until there is none, and a group writer."""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class PollingThreads:
    """Run `run_once()` in `threads` threads; each sleeps `poll_seconds` or until `wake()`.

    `run_once` returns how much it did; 0 means idle. An idle thread sleeps `idle_wait()`
    seconds when given (e.g. until the next row is due), else `poll_seconds`. An exception
    is logged and the thread waits a poll before trying again (e.g. while the database
    restarts).
    """

    def __init__(
        self,
        run_once: Callable[[], int],
        *,
        threads: int,
        poll_seconds: float,
        name: str,
        idle_wait: Callable[[], float] | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        self._run_once = run_once
        self._threads = threads
        self._poll = poll_seconds
        self._name = name
        self._idle_wait = idle_wait
        self._stop_timeout = stop_timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def wake(self) -> None:
        """Tell the threads that work arrived."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was asked: finish what is in hand, take nothing new."""
        return self._stop.is_set()

    def start(self) -> None:
        """Start the threads (once)."""
        if self._workers:
            return
        self._stop.clear()
        for n in range(self._threads):
            thread = threading.Thread(target=self._loop, name=f"{self._name}-{n}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self) -> None:
        """Stop the threads after their current unit of work."""
        self._stop.set()
        self._wake.set()
        for thread in self._workers:
            thread.join(timeout=self._stop_timeout)
        self._workers.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self._run_once()
                wait = self._idle_wait() if not ran and self._idle_wait else self._poll
            except Exception:  # noqa: BLE001 - e.g. the database restarting; try again later
                log.exception("%s round failed", self._name)
                ran, wait = 0, self._poll
            if not ran:
                self._wake.wait(wait)
                self._wake.clear()
                if self._stop.is_set():
                    # stop() set the wake-up for every thread; one that cleared it must pass it
                    # on, or a sibling about to wait would sleep a whole poll before exiting.
                    self._wake.set()


class PolledWorker(ABC):
    """A worker whose `run_once()` claims and runs a batch of work and returns its size.

    In production `start()` runs it in polling threads; tests and benches call
    `run_until_idle()`. Subclasses call `_poll_with(...)` in their constructor.
    """

    _loop: PollingThreads

    def _poll_with(
        self,
        *,
        threads: int,
        poll_seconds: float,
        name: str,
        idle_wait: Callable[[], float] | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        self._loop = PollingThreads(
            self.run_once,
            threads=threads,
            poll_seconds=poll_seconds,
            name=name,
            idle_wait=idle_wait,
            stop_timeout=stop_timeout,
        )

    @abstractmethod
    def run_once(self) -> int:
        """Claim and run one batch; return how much was claimed (0: nothing to do)."""

    def run_until_idle(self, *, max_rounds: int = 100_000) -> int:
        """Run batches until nothing is due; return how much ran."""
        total = 0
        for _ in range(max_rounds):
            ran = self.run_once()
            if not ran:
                break
            total += ran
        return total

    def wake(self) -> None:
        """Tell the threads that work arrived (in this process)."""
        self._loop.wake()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was asked."""
        return self._loop.stopping

    def start(self) -> None:
        """Start the threads."""
        self._loop.start()

    def stop(self) -> None:
        """Stop the threads after their current batch."""
        self._loop.stop()


class GroupWriter(Generic[T, R]):
    """Write items handed in by many threads in one transaction per batch (group commit).

    `submit(item)` blocks until `write` stored the item and returns its result. One
    thread writes: whatever arrived while it wrote the last batch goes into the next one,
    so a burst of N callers costs a few transactions instead of N. When a batch fails,
    its items are written one at a time, so one bad item fails only its own caller.
    """

    def __init__(
        self, write: Callable[[list[T]], Sequence[R]], *, name: str, max_batch: int = 500
    ) -> None:
        self._write = write
        self._name = name
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[T, Future[R]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, item: T) -> R:
        """Store `item` and return what `write` returned for it (or raise its error)."""
        future: Future[R] = Future()
        self._queue.put((item, future))
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                    self._thread.start()
        return future.result()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write_batch(batch)

    def _write_batch(self, batch: list[tuple[T, Future[R]]]) -> None:
        try:
            results = list(self._write([item for item, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(
                    f"{self._name}: {len(batch)} items written, {len(results)} results"
                )
        except Exception as error:  # noqa: BLE001 - handed to the callers
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            log.warning(
                "%s: a batch of %d failed; writing its items one at a time",
                self._name,
                len(batch),
            )
            for one in batch:
                self._write_batch([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
