"""What the person who clicked or typed hears when a Slack listener fails, and how a listener
bound to its dependencies looks to Bolt."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from slack_bolt.util.utils import get_arg_names_of_callable, get_name_for_callable

from domain.errors import NotPermitted
from handlers.slack.common import Bound, SlackDeps, tells_user_on_error

CLICK: dict[str, Any] = {
    "type": "block_actions",
    "team": {"id": "T0LENDER"},
    "user": {"id": "U0MARIA01"},
    "channel": {"id": "C0REVIEW"},
}


@dataclass
class FakeSlackClient:
    """Records the ephemeral messages a listener sends, as Slack would show them."""

    ephemerals: list[tuple[str, str, str]] = field(default_factory=list)

    def chat_postEphemeral(self, *, channel: str, user: str, text: str) -> None:  # noqa: N802
        self.ephemerals.append((channel, user, text))


@dataclass
class FakeResponse:
    status_code: int = 200
    body: str = "ok"


@dataclass
class FakeRespond:
    """Records what a slash command's listener answers through its response_url."""

    answers: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, **answer: Any) -> FakeResponse:
        self.answers.append(answer)
        return FakeResponse()


@tells_user_on_error
def approve_broken(body: dict[str, Any], client: FakeSlackClient) -> None:
    raise RuntimeError("connection to the database lost")


@tells_user_on_error
def approve_refused(body: dict[str, Any], client: FakeSlackClient) -> None:
    raise NotPermitted("Only the rep who launched this job, or an admin, can act on its cards.")


@tells_user_on_error
def run_broken_command(command: dict[str, Any], respond: FakeRespond) -> None:
    raise RuntimeError("planner crashed")


def test_an_unexpected_error_is_logged_with_an_id_the_user_is_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeSlackClient()
    with caplog.at_level(logging.ERROR, logger="handlers.slack.common"):
        approve_broken(body=CLICK, client=client)

    [(channel, user, text)] = client.ephemerals
    assert (channel, user) == ("C0REVIEW", "U0MARIA01")
    [record] = [r for r in caplog.records if r.getMessage() == "slack listener failed"]
    error_id = record.error_id  # type: ignore[attr-defined]
    assert text == (
        f"⚠️ Something went wrong on our side (error id {error_id}). "
        "Nothing was sent twice; try again."
    )
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "connection to the database lost"


def test_a_refusal_is_told_in_its_own_words_and_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeSlackClient()
    with caplog.at_level(logging.ERROR, logger="handlers.slack.common"):
        approve_refused(body=CLICK, client=client)

    assert client.ephemerals == [
        (
            "C0REVIEW",
            "U0MARIA01",
            "⚠️ Only the rep who launched this job, or an admin, can act on its cards.",
        )
    ]
    assert caplog.records == []


def test_a_slash_command_that_fails_answers_through_its_response_url() -> None:
    respond = FakeRespond()

    run_broken_command(command={"command": "/campaign", "text": "list"}, respond=respond)

    [answer] = respond.answers
    assert answer["response_type"] == "ephemeral"
    assert answer["replace_original"] is False
    assert answer["text"].startswith("⚠️ Something went wrong on our side (error id ")


def test_a_listener_that_cannot_reach_the_user_is_refused_when_decorated() -> None:
    def approve_without_client(body: dict[str, Any]) -> None:
        """A listener with no way to tell anyone."""

    with pytest.raises(TypeError, match="approve_without_client takes no client"):
        tells_user_on_error(approve_without_client)


def test_a_bound_listener_shows_bolt_its_name_and_the_arguments_after_the_dependencies() -> None:
    told: list[str] = []

    @tells_user_on_error
    def save_reject(
        deps: SlackDeps, view: dict[str, Any], body: dict[str, Any], client: FakeSlackClient
    ) -> None:
        told.append(f"{deps.clock} {view['id']}")

    deps = SlackDeps(
        outreach=None,  # type: ignore[arg-type]
        accounts=None,  # type: ignore[arg-type]
        rules=None,  # type: ignore[arg-type]
        session_factory=None,  # type: ignore[arg-type]
        clock="the clock",  # type: ignore[arg-type]
        wake_worker=lambda: None,
        gmail_connect_url=lambda actor: None,
        gmail_address=lambda actor: None,
        reply_policies=None,  # type: ignore[arg-type]
    )
    bound = Bound(save_reject, deps)

    # Bolt stores a lazy call under this name and finds the function again by it.
    assert get_name_for_callable(bound) == "save_reject"
    assert get_arg_names_of_callable(bound) == ["view", "body", "client"]
    bound(view={"id": "V0REJECT"}, body=CLICK, client=FakeSlackClient())
    assert told == ["the clock V0REJECT"]
