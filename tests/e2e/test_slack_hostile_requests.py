"""Requests to /slack/events that are not Slack's are refused with a 4xx before Bolt
parses or logs their body (they answered 500, or were logged whole)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from domain.clock import FixedClock
from tests.support.slack import ServedSlack, signed_headers
from tests.support.slack_app import SIGNING_SECRET, SlackWorld, slack_world

pytestmark = pytest.mark.slow

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock) as built:
        yield built


def test_a_timestamp_that_is_not_a_number_is_refused_with_401(world: SlackWorld) -> None:
    body = "command=%2Fcampaign&text=list"
    headers = {**FORM, "x-slack-request-timestamp": "abc", "x-slack-signature": "v0=00"}
    answer = world.post(body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] == {
        "code": "invalid_signature",
        "message": "missing or malformed X-Slack-Request-Timestamp",
        "details": [],
    }


def test_an_unsigned_payload_that_is_not_an_object_is_refused_with_401(world: SlackWorld) -> None:
    body = "payload=%5B1%2C2%2C3%5D"  # payload=[1,2,3]
    stamp = str(int(time.time()))
    headers = {**FORM, "x-slack-request-timestamp": stamp, "x-slack-signature": "v0=forged"}
    answer = world.post(body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["message"] == "invalid request signature"


def test_a_signed_payload_that_is_not_an_object_is_refused_with_400(world: SlackWorld) -> None:
    body = "payload=%5B1%2C2%2C3%5D"
    answer = world.post(body, headers=signed_headers(body, signing_secret=SIGNING_SECRET))
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "malformed Slack payload"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record, from before the app is built (Bolt's loggers copy the root's level)."""
    caplog.set_level(logging.DEBUG)
    return caplog


def test_an_unsigned_body_is_never_written_to_the_log(
    debug_logs: pytest.LogCaptureFixture, world: SlackWorld
) -> None:
    body = "text=" + "secret-looking-body-" * 20_000  # 400 kB, within the limit
    answer = world.post(body, headers={**FORM, "x-slack-request-timestamp": "1"})
    assert answer.status_code == 401
    assert "secret-looking-body" not in debug_logs.text


def test_a_10_mb_body_is_refused_with_413_before_it_is_read(
    debug_logs: pytest.LogCaptureFixture, world: SlackWorld
) -> None:
    body = "text=" + "x" * 10_000_000
    answer = world.post(body, headers=FORM)
    assert answer.status_code == 413
    assert answer.json()["error"]["message"] == (
        "request body too large: this endpoint takes at most 1 MiB"
    )
    assert "xxxxxxxxxx" not in debug_logs.text
