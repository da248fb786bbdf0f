"""Authorizations in OAuth mode are cached per workspace, briefly and boundedly."""

from __future__ import annotations

import threading
import time
from typing import Any

from slack_bolt import BoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.authorize import Authorize

from bot.slack_oauth import CachedAuthorize


class CountingAuthorize(Authorize):
    """Stands for Bolt's installation-store authorize: one auth.test per call."""

    def __init__(self, *, user_token: str | None = None, delay: float = 0.0) -> None:
        self.calls: list[str | None] = []
        self._user_token = user_token
        self._delay = delay
        self._lock = threading.Lock()

    def __call__(self, *, team_id: str | None, **_: Any) -> AuthorizeResult | None:
        time.sleep(self._delay)
        with self._lock:
            self.calls.append(team_id)
        if team_id == "T0GONE":
            return None
        return AuthorizeResult(
            enterprise_id=None,
            team_id=team_id,
            bot_token=f"xoxb-{team_id}",
            bot_user_id=f"U{team_id}BOT",
            user_token=self._user_token,
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(authorize: CachedAuthorize, team_id: str) -> AuthorizeResult | None:
    return authorize(context=BoltContext(), enterprise_id=None, team_id=team_id, user_id="U1")


def test_a_workspace_is_authorized_once_a_minute() -> None:
    inner, clock = CountingAuthorize(), Clock()
    cached = CachedAuthorize(inner, ttl_seconds=60, clock=clock)

    results = [ask(cached, "T0LONE") for _ in range(5)]
    clock.now += 59.9
    ask(cached, "T0LONE")
    clock.now += 0.2
    ask(cached, "T0LONE")

    assert inner.calls == ["T0LONE", "T0LONE"]
    assert {r.bot_token for r in results if r is not None} == {"xoxb-T0LONE"}


def test_a_burst_of_concurrent_requests_asks_slack_once() -> None:
    inner = CountingAuthorize(delay=0.05)
    cached = CachedAuthorize(inner)
    threads = [threading.Thread(target=ask, args=(cached, "T0LONE")) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inner.calls == ["T0LONE"]


def test_each_request_gets_its_own_copy_of_the_authorization() -> None:
    cached = CachedAuthorize(CountingAuthorize())
    first = ask(cached, "T0LONE")
    assert first is not None
    first["bot_token"] = "changed by a listener"
    second = ask(cached, "T0LONE")
    assert second is not None
    assert second["bot_token"] == "xoxb-T0LONE"


def test_a_workspace_that_is_not_authorized_is_asked_again_every_time() -> None:
    inner = CountingAuthorize()
    cached = CachedAuthorize(inner)
    assert [ask(cached, "T0GONE"), ask(cached, "T0GONE")] == [None, None]
    assert inner.calls == ["T0GONE", "T0GONE"]


def test_an_authorization_with_a_user_token_is_not_kept() -> None:
    inner = CountingAuthorize(user_token="xoxp-someone")
    cached = CachedAuthorize(inner)
    ask(cached, "T0LONE")
    ask(cached, "T0LONE")
    assert inner.calls == ["T0LONE", "T0LONE"]


def test_the_least_recently_used_workspace_is_dropped_beyond_the_bound() -> None:
    inner = CountingAuthorize()
    cached = CachedAuthorize(inner, max_teams=2)
    for team in ("T0A", "T0B", "T0A", "T0C", "T0A", "T0B"):
        ask(cached, team)
    assert inner.calls == ["T0A", "T0B", "T0C", "T0B"]


def test_a_forgotten_workspace_is_asked_again() -> None:
    inner = CountingAuthorize()
    cached = CachedAuthorize(inner)
    ask(cached, "T0LONE")
    cached.forget(enterprise_id=None, team_id="T0LONE")
    ask(cached, "T0LONE")
    assert inner.calls == ["T0LONE", "T0LONE"]
