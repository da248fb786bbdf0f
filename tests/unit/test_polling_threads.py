"""PollingThreads: stop() ends every thread, including one busy when it was asked."""

from __future__ import annotations

import threading
import time

from jobs.loop import PollingThreads


def _alive(name: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(name) and t.is_alive()]


def test_stop_ends_a_thread_that_finished_its_round_after_an_idle_sibling_took_the_wake_up() -> (
    None
):
    # One thread idles in its wait; the other is inside run_once when stop() is asked. The
    # idle one wakes and clears the shared event; the busy one then finishes its round and
    # must not sleep a whole poll (300 s) before it sees the stop.
    release = threading.Event()
    busy_started = threading.Event()
    calls = 0
    lock = threading.Lock()

    def run_once() -> int:
        nonlocal calls
        with lock:
            calls += 1
            first = calls == 1
        if first:
            busy_started.set()
            release.wait(10)
        return 0

    threads = PollingThreads(
        run_once, threads=2, poll_seconds=300, name="stop-race", stop_timeout=5
    )
    threads.start()
    assert busy_started.wait(5)
    stopper = threading.Thread(target=threads.stop)
    stopper.start()
    while not threads.stopping:
        time.sleep(0.01)
    time.sleep(0.2)  # the idle thread wakes and clears the event meanwhile
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert _alive("stop-race") == []


def test_stop_then_start_runs_again() -> None:
    ran = threading.Event()
    threads = PollingThreads(lambda: ran.set() or 0, threads=1, poll_seconds=300, name="again")
    threads.start()
    assert ran.wait(5)
    threads.stop()
    ran.clear()
    threads.start()
    assert ran.wait(5)
    threads.stop()
    assert _alive("again") == []
