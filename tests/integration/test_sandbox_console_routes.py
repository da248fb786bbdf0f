"""The /sandbox console's routes, on the stand-ins alone (the browser test drives the whole app)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from domain.clock import ShiftedClock
from sandbox.console.app import ACTION_HEADER, CannedReply, Console, mount_console
from sandbox.google import GoogleStandIn
from sandbox.slack_api import DEFAULT_ADMIN_USER_ID, SlackStandIn, start_slack_stand_in

MAILBOX = "admin@sandbox-appraisals.example"
FROM_CONSOLE = {ACTION_HEADER: "1"}


class Wakes:
    """Counts how often the console woke the periodic jobs."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    stand_in, server = start_slack_stand_in()
    try:
        yield stand_in
    finally:
        server.stop()


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def client(slack: SlackStandIn, clock: ShiftedClock, wakes: Wakes) -> TestClient:
    google = GoogleStandIn()
    google.add_mailbox(MAILBOX)
    app = FastAPI()
    mount_console(
        app,
        Console(
            slack=slack,
            google=google,
            clock=clock,
            signing_secret="sandbox-signing-secret-0123456789",
            app_url=lambda: "http://127.0.0.1:9",  # nothing listens: no action reaches an app
            user_id=DEFAULT_ADMIN_USER_ID,
            mailbox=MAILBOX,
            push_audience="http://127.0.0.1:9/api/integrations/gmail/push",
            wake=wakes,
            canned_replies=[CannedReply("Interested", "Sounds good — call me <Tuesday>.")],
        ),
    )
    return TestClient(app)


def test_the_page_lists_the_workspace_and_offers_the_canned_replies(client: TestClient) -> None:
    page = client.get("/sandbox")
    panes = client.get("/sandbox/panes").json()

    assert page.status_code == 200
    assert 'data-body="Sounds good — call me &lt;Tuesday&gt;."' in page.text
    assert 'data-channel-id="C0SANDBOXGEN"># general' in panes["channels"]
    assert panes["title"] == "salesbot"
    assert panes["modal"] is None
    assert client.get("/sandbox/static/console.js").status_code == 200


def test_an_action_without_the_consoles_header_is_refused(client: TestClient) -> None:
    for path, form in (
        ("/sandbox/command", {"channel": "C0SANDBOXGEN", "text": "/campaign help"}),
        ("/sandbox/clock", {"hours": "24"}),
        ("/sandbox/mail", {"from_addr": "dana@x.com"}),
    ):
        assert client.post(path, data=form).status_code == 403, path


def test_the_clock_moves_forward_by_the_offered_steps_only_and_wakes_the_jobs(
    client: TestClient, clock: ShiftedClock, wakes: Wakes
) -> None:
    moved = client.post("/sandbox/clock", data={"hours": "96"}, headers=FROM_CONSOLE)
    refused = client.post("/sandbox/clock", data={"hours": "-24"}, headers=FROM_CONSOLE)

    assert moved.json()["ok"] is True
    assert clock.offset == timedelta(days=4)
    assert wakes.count == 1
    assert refused.status_code == 400
    assert "+1 hour, +1 day, +4 days, +1 week" in refused.json()["note"]
    assert "4 days ahead of the wall clock" in client.get("/sandbox/panes").json()["clock"]


def test_an_unknown_command_is_refused_with_the_ones_salesbot_knows(client: TestClient) -> None:
    answer = client.post(
        "/sandbox/command",
        data={"channel": "C0SANDBOXGEN", "text": "/giphy cats"},
        headers=FROM_CONSOLE,
    )

    assert answer.status_code == 400
    assert answer.json()["note"] == (
        "/giphy is not a command of Salesbot; try one of "
        "/campaign, /job, /rules, /triage, /engagement, /digest"
    )


def test_an_email_from_no_address_is_refused_before_anything_is_delivered(
    client: TestClient,
) -> None:
    answer = client.post(
        "/sandbox/mail",
        data={"from_addr": "dana", "subject": "hi", "body": "x"},
        headers=FROM_CONSOLE,
    )

    assert answer.status_code == 400
    assert answer.json()["note"] == "the sender needs an email address (name@example.com)"
    assert "No mail yet" in client.get("/sandbox/panes").json()["mailbox"]


def test_a_message_in_a_channel_shows_with_its_thread_and_ephemerals(
    client: TestClient, slack: SlackStandIn
) -> None:
    posted = slack.call(
        "chat.postMessage",
        {"channel": "C0SANDBOXGEN", "text": "Dana <b>replied</b> &lt;i&gt;"},
        token=slack.default_token,
    ).body
    for text in ("one", "two"):
        slack.call(
            "chat.postMessage",
            {"channel": "C0SANDBOXGEN", "text": text, "thread_ts": posted["ts"]},
            token=slack.default_token,
        )
    slack.answer_command(channel="C0SANDBOXGEN", user=DEFAULT_ADMIN_USER_ID, body="Launching…")

    panes = client.get("/sandbox/panes", params={"channel": "C0SANDBOXGEN"}).json()
    thread = client.get(
        "/sandbox/panes", params={"channel": "C0SANDBOXGEN", "thread": posted["ts"]}
    ).json()

    assert panes["title"] == "#general"
    # Slack reads <b> as a link to "b": no tag reaches the page.
    assert "Dana breplied/b &lt;i&gt;" in panes["messages"]
    assert "2 replies" in panes["messages"]
    assert "Only visible to you" in panes["messages"]
    assert ">one<" in thread["thread"]
    assert ">two<" in thread["thread"]


def test_an_uploaded_file_is_served_and_an_unknown_one_is_not(
    client: TestClient, slack: SlackStandIn
) -> None:
    token = slack.default_token
    upload = slack.call(
        "files.getUploadURLExternal", {"filename": "chart.png", "length": "4"}, token=token
    ).body
    slack.receive_upload(upload["upload_url"].rsplit("/", 1)[-1], b"\x89PNG")
    slack.call("files.completeUploadExternal", {"files": [{"id": upload["file_id"]}]}, token=token)

    served = client.get(f"/sandbox/files/{upload['file_id']}")

    assert (served.status_code, served.content) == (200, b"\x89PNG")
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert client.get("/sandbox/files/F0NOTHERE1").status_code == 404
