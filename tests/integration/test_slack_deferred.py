"""The queue of Slack work deferred past the ack, and the worker that replays it through Bolt.

The queue runs on SQLite and PostgreSQL; the worker replays stored requests through a real
Bolt app built as the worker's is (no signature check, acks run in the request's thread)
with one listener whose lazy function the test controls.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from slack_bolt import Ack, App, BoltContext
from slack_bolt.authorization import AuthorizeResult
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from jobs.slack_deferred import LEASE, MAX_ATTEMPTS, DeferredSlackWorker
from storage.db import make_session_factory
from storage.models import SlackDeferredCall
from storage.slack_deferred import NewCall, SlackDeferredQueue
from tests.support.builders import make_org

FORM = "application/x-www-form-urlencoded"
TEAM = "T0LENDER"


@pytest.fixture
def queue(session_factory: Callable[[], Session]) -> SlackDeferredQueue:
    return SlackDeferredQueue(session_factory)


def click_body(value: str, *, action_id: str = "approve", team: str = TEAM) -> str:
    """Return the form body Slack posts when Maria clicks a card's button."""
    payload = {
        "type": "block_actions",
        "api_app_id": "A0SALESBOT",
        "token": "verification-token",
        "trigger_id": "1337.42.abcdef",
        "team": {"id": team, "domain": "pinnacle"},
        "user": {"id": "U0MARIA", "team_id": team},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "card",
                "value": value,
                "action_ts": "1764082800.000100",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def click(value: str, *, function: str = "approve_card", team: str | None = TEAM) -> NewCall:
    """Return the call the web process stores for a click's lazy function."""
    return NewCall(team_id=team, function=function, body=click_body(value), content_type=FORM)


def clicked_value(body: str) -> str:
    """Return the value of the button a stored click body carries."""
    return str(json.loads(parse_qs(body)["payload"][0])["actions"][0]["value"])


def stored(session_factory: Callable[[], Session], call_id: int) -> SlackDeferredCall | None:
    """Read a call's row as committed by the queue."""
    with session_factory() as session:
        return session.get(SlackDeferredCall, call_id)


def status_of(session_factory: Callable[[], Session], call_id: int) -> str | None:
    row = stored(session_factory, call_id)
    return None if row is None else row.status


# --- enqueue ------------------------------------------------------------------------------


def test_enqueue_returns_ids_in_the_order_given_and_stores_pending_calls(
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    calls = [click(f"card-{n}") for n in range(5)]

    ids = queue.enqueue(calls, now=clock.now())

    assert len(set(ids)) == 5
    rows = [stored(session_factory, call_id) for call_id in ids]
    assert [clicked_value(row.body) for row in rows if row] == [
        "card-0",
        "card-1",
        "card-2",
        "card-3",
        "card-4",
    ]
    for row in rows:
        assert row is not None
        assert (row.status, row.attempts, row.not_before, row.error) == (
            "pending",
            0,
            clock.now(),
            None,
        )
        assert (row.function, row.content_type, row.team_id) == ("approve_card", FORM, TEAM)
    assert queue.counts() == {"pending": 5}


def test_enqueue_finds_the_organization_by_its_slack_team(
    queue: SlackDeferredQueue,
    session: Session,
    session_factory: Callable[[], Session],
    clock: FixedClock,
) -> None:
    lender = make_org(session, slack_team_id=TEAM)
    other = make_org(session, slack_team_id="T0OTHER")
    session.commit()

    ids = queue.enqueue(
        [
            click("a", team=TEAM),
            click("b", team="T0UNKNOWN"),
            click("c", team=None),
            click("d", team="T0OTHER"),
        ],
        now=clock.now(),
    )

    org_ids = [row.org_id for row in (stored(session_factory, i) for i in ids) if row]
    assert org_ids == [lender.id, None, None, other.id]


# --- claim --------------------------------------------------------------------------------


def test_claim_takes_due_calls_oldest_first_up_to_the_limit(
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    now = clock.now()
    newer = queue.enqueue([click("a"), click("b"), click("c")], now=now)
    # Stored after the others but due earlier (a retry, say): the oldest by due time.
    (older,) = queue.enqueue([click("d")], now=now - timedelta(minutes=1))
    (future,) = queue.enqueue([click("e")], now=now + timedelta(seconds=1))
    lease_until = now + LEASE

    first = queue.claim(limit=2, now=now, lease_until=lease_until)
    second = queue.claim(limit=10, now=now, lease_until=lease_until)

    assert {call.id: clicked_value(call.body) for call in first} == {newer[0]: "a", older: "d"}
    assert [call.id for call in second] == newer[1:]
    assert future not in {call.id for call in first + second}
    assert {(call.function, call.content_type, call.attempts) for call in first + second} == {
        ("approve_card", FORM, 1)
    }
    for call_id in [older, *newer]:
        row = stored(session_factory, call_id)
        assert row is not None
        assert (row.status, row.not_before, row.attempts) == ("running", lease_until, 1)
    assert queue.counts() == {"running": 4, "pending": 1}


def test_claim_carries_the_organization_of_the_call(
    queue: SlackDeferredQueue, session: Session, clock: FixedClock
) -> None:
    lender = make_org(session, slack_team_id=TEAM)
    session.commit()
    queue.enqueue([click("a"), click("b", team=None)], now=clock.now())

    claimed = queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)

    assert [call.org_id for call in claimed] == [lender.id, None]


def test_a_claimed_call_is_not_claimed_again_while_its_lease_runs(
    queue: SlackDeferredQueue, clock: FixedClock
) -> None:
    queue.enqueue([click("a")], now=clock.now())
    queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)

    just_before = clock.now() + LEASE - timedelta(seconds=1)

    assert queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE) == []
    assert queue.claim(limit=5, now=just_before, lease_until=just_before + LEASE) == []


def test_a_call_whose_worker_died_is_claimed_again_when_the_lease_runs_out(
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    (call_id,) = queue.enqueue([click("a")], now=clock.now())
    queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)
    expired = clock.now() + LEASE

    (again,) = queue.claim(limit=5, now=expired, lease_until=expired + LEASE)

    assert (again.id, again.attempts) == (call_id, 2)
    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.not_before) == ("running", expired + LEASE)


# --- done, failed, counts -----------------------------------------------------------------


def test_done_deletes_the_call(
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    ran, kept = queue.enqueue([click("a"), click("b")], now=clock.now())
    claimed = queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)

    assert queue.done(claimed[0]) is True

    assert stored(session_factory, ran) is None
    assert status_of(session_factory, kept) == "running"
    assert queue.counts() == {"running": 1}


def test_a_failed_call_with_a_retry_time_is_pending_again_from_then(
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    (call_id,) = queue.enqueue([click("a")], now=clock.now())
    (call,) = queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)
    retry_at = clock.now() + timedelta(seconds=30)

    assert queue.failed(call, "SlackApiError: ratelimited", retry_at=retry_at) is True

    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.not_before, row.attempts, row.error) == (
        "pending",
        retry_at,
        1,
        "SlackApiError: ratelimited",
    )
    early = retry_at - timedelta(seconds=1)
    assert queue.claim(limit=5, now=early, lease_until=early + LEASE) == []
    (again,) = queue.claim(limit=5, now=retry_at, lease_until=retry_at + LEASE)
    assert (again.id, again.attempts) == (call_id, 2)


def test_a_call_failed_for_good_is_never_claimed_again_and_keeps_a_clean_error(
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    (call_id,) = queue.enqueue([click("a")], now=clock.now())
    (call,) = queue.claim(limit=5, now=clock.now(), lease_until=clock.now() + LEASE)
    # A NUL (refused by PostgreSQL in text) and far more text than is kept.
    error = "ValueError: bad\x00byte " + "x" * 3000

    queue.failed(call, error, retry_at=None)

    row = stored(session_factory, call_id)
    assert row is not None
    assert (row.status, row.not_before) == ("failed", None)
    assert row.error is not None
    assert row.error.startswith("ValueError: bad\ufffdbyte xxx")
    assert len(row.error) == 2000
    much_later = clock.now() + timedelta(days=30)
    assert queue.claim(limit=5, now=much_later, lease_until=much_later + LEASE) == []
    assert queue.counts() == {"failed": 1}


def test_counts_report_calls_by_status(queue: SlackDeferredQueue, clock: FixedClock) -> None:
    queue.enqueue([click(str(n)) for n in range(6)], now=clock.now())
    claimed = queue.claim(limit=4, now=clock.now(), lease_until=clock.now() + LEASE)
    queue.done(claimed[0])
    queue.failed(claimed[1], "gone", retry_at=None)
    queue.failed(claimed[2], "later", retry_at=clock.now() + timedelta(minutes=1))

    assert queue.counts() == {"pending": 3, "running": 1, "failed": 1}


# --- claims from many workers at once (real commits) --------------------------------------


def test_a_worker_whose_lease_ran_out_cannot_settle_the_call_another_worker_took(
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
) -> None:
    (call_id,) = queue.enqueue([click("a")], now=clock.now())
    (slow,) = queue.claim(limit=1, now=clock.now(), lease_until=clock.now() + LEASE)
    clock.advance(seconds=LEASE.total_seconds())
    (taken,) = queue.claim(limit=1, now=clock.now(), lease_until=clock.now() + LEASE)

    assert queue.done(slow) is False
    assert queue.failed(slow, "late", retry_at=None) is False
    assert status_of(session_factory, call_id) == "running"
    assert queue.done(taken) is True
    assert queue.counts() == {}


def test_concurrent_claimers_never_get_the_same_call(
    committed_engine: Engine, clock: FixedClock
) -> None:
    queue = SlackDeferredQueue(make_session_factory(committed_engine))
    ids = queue.enqueue([click(str(n)) for n in range(200)], now=clock.now())
    now = clock.now()
    start = threading.Barrier(4)
    claimed: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def claim_until_empty(mine: list[int]) -> None:
        try:
            start.wait()
            while batch := queue.claim(limit=3, now=now, lease_until=now + LEASE):
                mine.extend(call.id for call in batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=claim_until_empty, args=(mine,)) for mine in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    every_claim = Counter(call_id for mine in claimed for call_id in mine)
    assert sorted(every_claim) == sorted(ids)
    assert [call_id for call_id, times in every_claim.items() if times != 1] == []
    assert queue.counts() == {"running": 200}


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


def make_worker(
    replay: ReplayApp, queue: SlackDeferredQueue, clock: FixedClock
) -> DeferredSlackWorker:
    return DeferredSlackWorker(replay.app, queue, clock, threads=1, claim_size=4)


def test_the_worker_runs_a_stored_call_and_forgets_it(
    queue: SlackDeferredQueue, clock: FixedClock
) -> None:
    replay = ReplayApp()
    queue.enqueue([click("card-7"), click("card-8")], now=clock.now())

    ran = make_worker(replay, queue, clock).run_until_idle()

    assert ran == 2
    assert replay.ran == [(TEAM, "card-7"), (TEAM, "card-8")]
    assert replay.errors == []
    assert queue.counts() == {}


def test_the_worker_leaves_calls_that_are_not_due(
    queue: SlackDeferredQueue, clock: FixedClock
) -> None:
    replay = ReplayApp()
    queue.enqueue([click("card-7")], now=clock.now() + timedelta(minutes=1))

    assert make_worker(replay, queue, clock).run_until_idle() == 0

    assert replay.ran == []
    assert queue.counts() == {"pending": 1}


def test_a_call_naming_a_function_no_listener_has_is_retried_then_failed(
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
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
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
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
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
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
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
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
    queue: SlackDeferredQueue, clock: FixedClock
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
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
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
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
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
    queue: SlackDeferredQueue, session_factory: Callable[[], Session], clock: FixedClock
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
