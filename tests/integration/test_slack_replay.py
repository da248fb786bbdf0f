"""The worker that replays stored Slack calls through Bolt.

It replays stored requests through a real Bolt app built as the worker's is (no signature
check, acks run in the request's thread) with one listener whose lazy function the test
controls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from slack_bolt import Ack, App, BoltContext
from slack_bolt.authorization import AuthorizeResult
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from jobs.slack_replay import LEASE, MAX_ATTEMPTS, SlackReplayWorker
from storage.slack_calls import SlackCallQueue
from tests.support.slack_calls import TEAM, click, stored


@pytest.fixture
def queue(session_factory: Callable[[], Session]) -> SlackCallQueue:
    return SlackCallQueue(session_factory)


# --- the worker, replaying through Bolt ---------------------------------------------------


class ReplayApp:
    """A Bolt app built as the worker's replay app is, with one listener the test controls.

    `approve` acks, and its lazy function `approve_card` records the clicked value. The
    authorizer stands in for the installation store: it can fail the next few requests.
    """

    def __init__(
        self, *, lazy_failures: int = 0, authorize_failures: int = 0, unauthorized: int = 0
    ) -> None:
        self.ran: list[tuple[str | None, str]] = []
        self.lazy_failures = lazy_failures
        self.authorize_failures = authorize_failures
        self.unauthorized = unauthorized
        self.errors: list[Exception] = []

        # Bolt hands a function only the arguments it names (a bound method would get none).
        def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult | None:
            if self.authorize_failures:
                self.authorize_failures -= 1
                raise ConnectionError("installation store unreachable")
            if self.unauthorized:
                self.unauthorized -= 1
                return None
            return AuthorizeResult(
                enterprise_id=enterprise_id,
                team_id=team_id,
                bot_token="xoxb-replay-bot-token",
                bot_id="B0BOT",
                bot_user_id="U0BOT",
            )

        self.app = App(
            signing_secret="replay-signing-secret",
            authorize=authorize,
            process_before_response=True,
            request_verification_enabled=False,
            token_verification_enabled=False,
        )

        def ack_click(ack: Ack) -> None:
            ack()

        def approve_card(body: dict[str, Any], context: BoltContext) -> None:
            if self.lazy_failures:
                self.lazy_failures -= 1
                raise ConnectionError("Slack API unreachable")
            self.ran.append((context.team_id, body["actions"][0]["value"]))

        self.app.action("approve")(ack=ack_click, lazy=[approve_card])

        @self.app.error
        def on_error(error: Exception) -> None:
            # Logged, as the production app's handler does.
            self.errors.append(error)

    def reraise_errors(self) -> None:
        """Make Bolt's errors leave `dispatch`, so that the replay raises.

        Bolt catches a middleware's error and answers 500; `dispatch` raises only when the
        app's error handler does.
        """

        @self.app.error
        def reraise(error: Exception) -> None:
            self.errors.append(error)
            raise error


def make_worker(replay: ReplayApp, queue: SlackCallQueue, clock: FixedClock) -> SlackReplayWorker:
    return SlackReplayWorker(replay.app, queue, clock, threads=1, claim_size=4)


def test_the_worker_runs_a_stored_call_and_forgets_it(
    queue: SlackCallQueue, clock: FixedClock
) -> None:
    replay = ReplayApp()
    queue.enqueue([click("card-7"), click("card-8")], now=clock.now())

    ran = make_worker(replay, queue, clock).run_until_idle()

    assert ran == 2
    assert replay.ran == [(TEAM, "card-7"), (TEAM, "card-8")]
    assert replay.errors == []
    assert queue.counts() == {}


def test_the_worker_leaves_calls_that_are_not_due(queue: SlackCallQueue, clock: FixedClock) -> None:
    replay = ReplayApp()
    queue.enqueue([click("card-7")], now=clock.now() + timedelta(minutes=1))

    assert make_worker(replay, queue, clock).run_until_idle() == 0

    assert replay.ran == []
    assert queue.counts() == {"pending": 1}


def test_a_call_naming_a_function_no_listener_has_is_retried_then_failed(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    replay = ReplayApp()
    worker = make_worker(replay, queue, clock)
    # A function renamed by a deploy, or web processes already newer than this worker.
    (call_id,) = queue.enqueue([click("card-7", function="approve_card_v1")], now=clock.now())

    for _ in range(MAX_ATTEMPTS):
        assert worker.run_until_idle() == 1
        clock.advance(minutes=1)

    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.attempts, row.not_before) == ("failed", MAX_ATTEMPTS, None)
    assert row.error == (
        f"no listener has approve_card_v1 (Bolt answered 404) (attempt {MAX_ATTEMPTS}, given up)"
    )
    assert replay.ran == []
    clock.advance(days=1)
    assert worker.run_until_idle() == 0


def test_a_replay_bolt_answers_without_running_the_listener_is_retried(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    # The installation is not found once (e.g. auth.test failed): Bolt answers 200 with
    # a "please reinstall" text and runs no listener.
    replay = ReplayApp(unauthorized=1)
    worker = make_worker(replay, queue, clock)
    (call_id,) = queue.enqueue([click("card-7")], now=clock.now())

    assert worker.run_until_idle() == 1

    row = stored(session_factory, call_id)
    assert row is not None
    assert row.status == "pending"
    assert row.error is not None
    assert "without running the listener" in row.error
    clock.advance(minutes=1)
    assert worker.run_until_idle() == 1
    assert replay.ran == [(TEAM, "card-7")]
    assert queue.counts() == {}


def test_a_replay_that_raises_is_retried_after_a_delay_and_then_runs(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    replay = ReplayApp(authorize_failures=1)
    replay.reraise_errors()
    worker = make_worker(replay, queue, clock)
    (call_id,) = queue.enqueue([click("card-7")], now=clock.now())

    assert worker.run_until_idle() == 1

    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.attempts, row.error) == (
        "pending",
        1,
        "ConnectionError: installation store unreachable",
    )
    assert row.not_before == clock.now() + timedelta(seconds=10)
    assert replay.ran == []
    clock.advance(seconds=9)
    assert worker.run_until_idle() == 0
    clock.advance(seconds=1)
    assert worker.run_until_idle() == 1
    assert replay.ran == [(TEAM, "card-7")]
    assert queue.counts() == {}


def test_a_replay_that_keeps_raising_is_given_up_after_max_attempts(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    replay = ReplayApp(lazy_failures=100)
    worker = make_worker(replay, queue, clock)
    (call_id,) = queue.enqueue([click("card-7")], now=clock.now())

    delays = []
    for _ in range(MAX_ATTEMPTS - 1):
        before = clock.now()
        assert worker.run_until_idle() == 1
        row = stored(session_factory, call_id)
        assert row is not None
        assert row.status == "pending"
        assert row.not_before is not None
        delays.append(row.not_before - before)
        clock.advance(seconds=(row.not_before - before).total_seconds())
    assert worker.run_until_idle() == 1

    assert delays == [timedelta(seconds=10), timedelta(seconds=20)]
    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.attempts, row.not_before) == ("failed", MAX_ATTEMPTS, None)
    assert row.error == (
        f"ConnectionError: Slack API unreachable (attempt {MAX_ATTEMPTS}, given up)"
    )
    clock.advance(days=1)
    assert worker.run_until_idle() == 0
    assert replay.ran == []


def test_a_call_whose_worker_died_is_run_by_the_next_worker_after_the_lease(
    queue: SlackCallQueue, clock: FixedClock
) -> None:
    replay = ReplayApp()
    worker = make_worker(replay, queue, clock)
    queue.enqueue([click("card-7")], now=clock.now())
    # A worker claims it and dies before running it.
    queue.claim(limit=4, now=clock.now(), lease_until=clock.now() + LEASE)

    assert worker.run_until_idle() == 0
    clock.advance(seconds=LEASE.total_seconds())
    assert worker.run_until_idle() == 1

    assert replay.ran == [(TEAM, "card-7")]
    assert queue.counts() == {}


def test_a_call_that_killed_its_worker_every_time_is_given_up(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    replay = ReplayApp()
    worker = make_worker(replay, queue, clock)
    (call_id,) = queue.enqueue([click("card-7")], now=clock.now())
    for _ in range(MAX_ATTEMPTS):
        queue.claim(limit=4, now=clock.now(), lease_until=clock.now() + LEASE)
        clock.advance(seconds=LEASE.total_seconds())

    assert worker.run_until_idle() == 1

    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS + 1)
    assert row.error == f"its worker stopped while running it {MAX_ATTEMPTS} times"
    assert replay.ran == []


def test_a_lazy_function_that_raises_is_retried_later(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    replay = ReplayApp(lazy_failures=1)
    worker = make_worker(replay, queue, clock)
    (call_id,) = queue.enqueue([click("card-7")], now=clock.now())

    worker.run_until_idle()

    row = stored(session_factory, call_id)
    assert row is not None, "the call was deleted although its lazy function raised"
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.error is not None
    assert "Slack API unreachable" in row.error
    clock.advance(minutes=1)
    worker.run_until_idle()
    assert replay.ran == [(TEAM, "card-7")]
    assert queue.counts() == {}


def test_a_transient_authorize_error_is_retried_later(
    queue: SlackCallQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    # The production replay app's error handler logs and returns, as this one does.
    replay = ReplayApp(authorize_failures=1)
    worker = make_worker(replay, queue, clock)
    (call_id,) = queue.enqueue([click("card-7")], now=clock.now())

    worker.run_until_idle()

    row = stored(session_factory, call_id)
    assert row is not None
    # Bolt logs a middleware's error (through the app's error handler) and answers 500.
    assert (row.status, row.error) == ("pending", "Bolt answered 500 without running the listener")
    assert [str(e) for e in replay.errors] == ["installation store unreachable"]
    clock.advance(minutes=1)
    worker.run_until_idle()
    assert replay.ran == [(TEAM, "card-7")]
