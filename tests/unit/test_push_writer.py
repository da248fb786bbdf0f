"""PushWriter: pushes arriving together are committed together, each answered with its own
outcome, and a push the database refuses fails alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.clock import FixedClock
from domain.inbound import PushNotice
from handlers.gmail_push import PushWriter


class RefusedByDatabase(Exception):
    """What the fake database raises for a push it refuses."""


class FakePushStore:
    """Stores pushes in memory, slowly enough that concurrent pushes queue up."""

    def __init__(self, *, refuse: str | None = None, seconds: float = 0.05) -> None:
        self.refuse = refuse
        self.seconds = seconds
        self.batches: list[list[str]] = []
        self.stored: set[str] = set()
        self._lock = threading.Lock()

    def store_pushes(self, notices: Sequence[PushNotice], *, now: datetime) -> list[int | None]:
        time.sleep(self.seconds)
        ids = [n.message_id for n in notices]
        if self.refuse in ids:
            raise RefusedByDatabase(self.refuse)
        outcomes: list[int | None] = []
        with self._lock:
            self.batches.append(ids)
            for notice in notices:
                if notice.email != "rep@firm.example":
                    outcomes.append(None)
                else:
                    outcomes.append(0 if notice.message_id in self.stored else 1)
                    self.stored.add(notice.message_id)
        return outcomes


def _notice(message_id: str, email: str = "rep@firm.example") -> PushNotice:
    return PushNotice(message_id=message_id, email=email, history_id=1)


def _writer(store: FakePushStore) -> PushWriter:
    clock = FixedClock(datetime(2026, 11, 25, 15, 0, tzinfo=UTC))
    return PushWriter(store, clock)  # type: ignore[arg-type]


def test_concurrent_pushes_share_commits_and_each_gets_its_own_outcome() -> None:
    store = FakePushStore()
    writer = _writer(store)
    notices = [_notice(f"m{n}") for n in range(12)] + [_notice("m0"), _notice("x", "who@else")]

    with ThreadPoolExecutor(max_workers=len(notices)) as pool:
        outcomes = list(pool.map(writer.store, notices))

    assert outcomes == [1] * 12 + [0, None]
    assert sorted(m for batch in store.batches for m in batch) == sorted(
        [f"m{n}" for n in range(12)] + ["m0", "x"]
    )
    assert len(store.batches) < len(notices)


def test_a_push_the_database_refuses_fails_alone() -> None:
    store = FakePushStore(refuse="bad")
    writer = _writer(store)
    results: dict[str, Any] = {}

    def push(message_id: str) -> None:
        try:
            results[message_id] = writer.store(_notice(message_id))
        except RefusedByDatabase as exc:
            results[message_id] = exc

    threads = [threading.Thread(target=push, args=(m,)) for m in ("a", "bad", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)

    assert {m: r for m, r in results.items() if m != "bad"} == {"a": 1, "b": 1, "c": 1}
    assert isinstance(results["bad"], RefusedByDatabase)
    assert store.stored == {"a", "b", "c"}


def test_a_lone_push_is_written_by_its_own_request() -> None:
    store = FakePushStore(seconds=0)
    writer = _writer(store)

    assert writer.store(_notice("only")) == 1
    assert store.batches == [["only"]]


@pytest.mark.parametrize("count", [1, 50])
def test_the_writer_is_free_again_after_every_burst(count: int) -> None:
    store = FakePushStore(seconds=0.001)
    writer = _writer(store)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(writer.store, [_notice(f"first-{n}") for n in range(count)]))
    later = writer.store(_notice("later"))

    assert later == 1
    assert len(store.stored) == count + 1
