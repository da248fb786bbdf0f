"""GroupWriter: items submitted together are written together, each caller gets its own result,
and an item the write refuses fails only its own caller."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from jobs.loop import GroupWriter

WAIT = 10  # seconds; a guard against a hang, never reached when the tests pass


class Refused(Exception):
    """What the fake store raises for an item it refuses."""


class FakeStore:
    """Stores items in memory; the first write can be held so that other callers pile up."""

    def __init__(self, *, refuse: Sequence[int] = (), hold_first: bool = False) -> None:
        self.refuse = set(refuse)
        self.batches: list[list[int]] = []  # every write asked for, in order
        self.written: list[int] = []  # items of the writes that succeeded
        self.first_write_started = threading.Event()
        self.release_first_write = threading.Event()
        if not hold_first:
            self.release_first_write.set()

    def write(self, items: list[int]) -> list[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_write_started.set()
            assert self.release_first_write.wait(WAIT)
        refused = sorted(self.refuse.intersection(items))
        if refused:
            raise Refused(refused)
        self.written.extend(items)
        return [f"stored {item}" for item in items]


class Callers:
    """Threads that each submit one item and keep what came back: a result or an error."""

    def __init__(self, writer: GroupWriter[int, str]) -> None:
        self._writer = writer
        self.outcomes: dict[int, object] = {}
        self._lock = threading.Lock()
        self._started = threading.Condition()
        self._count = 0
        self._threads: list[threading.Thread] = []

    def submit(self, items: Sequence[int]) -> None:
        """Start one thread per item, and return once every one is about to submit."""
        for item in items:
            thread = threading.Thread(target=self._submit, args=(item,), daemon=True)
            self._threads.append(thread)
            thread.start()
        with self._started:
            assert self._started.wait_for(lambda: self._count == len(self._threads), WAIT)

    def join(self) -> dict[int, object]:
        for thread in self._threads:
            thread.join(WAIT)
            assert not thread.is_alive(), "a caller of submit() never got an answer"
        return self.outcomes

    def _submit(self, item: int) -> None:
        with self._started:
            self._count += 1
            self._started.notify_all()
        outcome: object
        try:
            outcome = self._writer.submit(item)
        except Exception as error:  # noqa: BLE001 - kept for the test to assert on
            outcome = error
        with self._lock:
            self.outcomes[item] = outcome


def pile_up(
    store: FakeStore, items: Sequence[int], **writer_options: Any
) -> tuple[GroupWriter[int, str], dict[int, object]]:
    """Hold the first write (item 0) while `items` are submitted from their own threads."""
    writer: GroupWriter[int, str] = GroupWriter(store.write, name="test-writer", **writer_options)
    first = Callers(writer)
    first.submit([0])
    assert store.first_write_started.wait(WAIT)
    others = Callers(writer)
    others.submit(items)
    store.release_first_write.set()
    outcomes = {**first.join(), **others.join()}
    return writer, outcomes


def test_submit_returns_what_the_write_returned_for_the_item() -> None:
    store = FakeStore()
    writer: GroupWriter[int, str] = GroupWriter(store.write, name="test-writer")

    assert writer.submit(7) == "stored 7"
    assert writer.submit(8) == "stored 8"
    assert store.batches == [[7], [8]]


def test_a_burst_of_callers_is_written_in_fewer_batches_each_getting_its_own_result() -> None:
    store = FakeStore(hold_first=True)
    items = list(range(1, 31))

    _, outcomes = pile_up(store, items)

    assert outcomes == {item: f"stored {item}" for item in [0, *items]}
    assert store.batches[0] == [0]
    assert len(store.batches) < 1 + len(items)
    assert sorted(store.written) == [0, *items]


def test_batches_are_no_larger_than_max_batch() -> None:
    store = FakeStore(hold_first=True)
    items = list(range(1, 11))

    _, outcomes = pile_up(store, items, max_batch=3)

    assert outcomes == {item: f"stored {item}" for item in [0, *items]}
    assert max(len(batch) for batch in store.batches) == 3
    assert sorted(store.written) == [0, *items]


def test_a_refused_item_fails_only_its_own_caller() -> None:
    store = FakeStore(refuse=[13], hold_first=True)
    items = list(range(1, 21))

    writer, outcomes = pile_up(store, items)

    refused = outcomes.pop(13)
    assert isinstance(refused, Refused)
    assert refused.args == ([13],)
    assert outcomes == {item: f"stored {item}" for item in [0, *items] if item != 13}
    # Every other item written exactly once, the refused one never.
    assert sorted(store.written) == [item for item in [0, *items] if item != 13]
    # The failed batch was retried one item at a time.
    (failed,) = [batch for batch in store.batches if 13 in batch and len(batch) > 1]
    at = store.batches.index(failed) + 1
    after = store.batches[at : at + len(failed)]
    assert after == [[item] for item in failed]
    # The writer goes on after a failure.
    assert writer.submit(99) == "stored 99"


def test_an_error_from_write_reaches_the_caller_of_submit() -> None:
    store = FakeStore(refuse=[5])
    writer: GroupWriter[int, str] = GroupWriter(store.write, name="test-writer")

    with pytest.raises(Refused) as raised:
        writer.submit(5)

    assert raised.value.args == ([5],)
    assert store.batches == [[5]]
    assert writer.submit(6) == "stored 6"


def test_an_error_of_any_kind_reaches_the_caller() -> None:
    def write(items: list[int]) -> list[str]:
        return [str(1 // item) for item in items]

    writer: GroupWriter[int, str] = GroupWriter(write, name="test-writer")

    with pytest.raises(ZeroDivisionError):
        writer.submit(0)
    assert writer.submit(1) == "1"


def test_a_write_that_returns_too_few_results_does_not_leave_its_caller_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer_died = threading.Event()
    answered = threading.Event()
    previous_hook: Callable[[threading.ExceptHookArgs], Any] = threading.excepthook

    def on_thread_error(args: threading.ExceptHookArgs) -> None:
        if args.thread is not None and args.thread.name == "short-writer":
            writer_died.set()
            answered.set()  # wake the test: no answer will come
            return
        previous_hook(args)

    monkeypatch.setattr(threading, "excepthook", on_thread_error)
    writer: GroupWriter[int, str] = GroupWriter(lambda items: [], name="short-writer")
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(writer.submit(1))
        except Exception as error:  # noqa: BLE001 - kept for the test to assert on
            outcome.append(error)
        answered.set()

    threading.Thread(target=call, daemon=True).start()
    assert answered.wait(WAIT)

    assert not writer_died.is_set(), "the writer thread died; submit() never returns"
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError)
    assert "1 items written, 0 results" in str(outcome[0])
