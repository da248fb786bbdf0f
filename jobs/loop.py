"""Background threads that run a unit of work until there is none, then wait for a wake-up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class PollingThreads:
    """Run `run_once()` in `threads` threads; each sleeps `poll_seconds` or until `wake()`.

    `run_once` returns how much it did; 0 means idle. An exception is logged and the
    thread waits a poll before trying again (e.g. while the database restarts).
    """

    def __init__(
        self, run_once: Callable[[], int], *, threads: int, poll_seconds: float, name: str
    ) -> None:
        self._run_once = run_once
        self._threads = threads
        self._poll = poll_seconds
        self._name = name
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        """Whether the threads are started."""
        return bool(self._workers)

    def wake(self) -> None:
        """Tell the threads that work arrived."""
        self._wake.set()

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
            thread.join(timeout=30)
        self._workers.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self._run_once()
            except Exception:  # noqa: BLE001 - e.g. the database restarting; try again later
                log.exception("%s round failed", self._name)
                ran = 0
            if not ran:
                self._wake.wait(self._poll)
                self._wake.clear()
