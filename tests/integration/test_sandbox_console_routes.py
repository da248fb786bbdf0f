"""The /sandbox console's routes, on the stand-ins alone (the browser test drives the whole app)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.clock import ShiftedClock
from handlers.observability import ObservabilityMiddleware
from integrations import metrics
from sandbox.console.app import ACTION_HEADER, Console, QuietPolls, Suggestion, mount_console
from sandbox.google import GoogleStandIn, start_google_stand_in
from sandbox.mail import PUSH_PATH
from sandbox.sample_replies import SAMPLES
from sandbox.server import RunningServer, serve_in_thread
from sandbox.slack_api import DEFAULT_ADMIN_USER_ID, SlackStandIn, start_slack_stand_in
from sandbox.slack_user import EVENTS_PATH

MAILBOX = "admin@sandbox-appraisals.example"
CONTACT = "dana.whitfield@pinnaclelending.example"
SIGNING_SECRET = "sandbox-signing-secret-0123456789"
AUDIENCE = "https://salesbot.example/api/integrations/gmail/push"
FROM_CONSOLE = {ACTION_HEADER: "1"}
# Where a person's browser reaches the console: a loopback name (the console checks it).
CONSOLE_URL = "http://localhost:8000"


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
            signing_secret=SIGNING_SECRET,
            app_url=lambda: "http://127.0.0.1:9",  # nothing listens: no action reaches an app
            user_id=DEFAULT_ADMIN_USER_ID,
            mailbox=MAILBOX,
            push_audience="http://127.0.0.1:9/api/integrations/gmail/push",
            wake=wakes,
            suggestions=[
                Suggestion("Launch it <now>:", command='/campaign launch "Q4 <win-back>"'),
                Suggestion("Approve a card."),
            ],
        ),
    )
    return TestClient(app, base_url=CONSOLE_URL)


def test_the_page_lists_the_workspace_and_offers_the_sample_replies(client: TestClient) -> None:
    page = client.get("/sandbox")
    panes = client.get("/sandbox/panes").json()

    assert page.status_code == 200
    for sample in SAMPLES:
        assert f'<option value="{sample.key}" data-expect=' in page.text
    assert len(SAMPLES) == 12
    assert "Launch it &lt;now&gt;:" in page.text
    assert 'data-suggest="/campaign launch &#34;Q4 &lt;win-back&gt;&#34;"' in page.text
    assert 'data-channel-id="C0SANDBOXGEN"># general' in panes["channels"]
    assert panes["title"] == "salesbot"
    assert panes["modal"] is None
    assert panes["deliveries"].strip() == ""
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
        "/campaign, /job, /rules, /triage, /engagement, /digest, /content"
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


# --- the inbound form against a Google stand-in and a stand-in of the app's endpoints -------


@dataclass
class Received:
    """What the stand-in of the app was sent: Gmail's pushes and Slack's events."""

    pushes: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    push_status: int = 204


@dataclass
class Wired:
    """The console wired to a served Google stand-in and an app that records what it gets."""

    client: TestClient
    google: GoogleStandIn
    google_url: str
    received: Received

    def send_outreach(self, to: str, subject: str) -> EmailMessage:
        """Send an email from the rep's mailbox through the Gmail API, as Salesbot does."""
        token = self.google.oauth.issue_grant(MAILBOX).access_token
        message = EmailMessage()
        message["From"] = f"Alex Rivera <{MAILBOX}>"
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = f"<{len(self.google.gmail.sent(MAILBOX))}.card@salesbot.example>"
        message.set_content("Hi Dana,\n\nOur turn times are down to 5 days.\n")
        raw = base64.urlsafe_b64encode(message.as_bytes()).decode()
        answer = httpx.post(
            f"{self.google_url}/gmail/v1/users/me/messages/send",
            json={"raw": raw},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return self.google.gmail.sent(MAILBOX)[-1].message

    def deliver(self, **form: str) -> httpx.Response:
        return self.client.post("/sandbox/mail", data=form, headers=FROM_CONSOLE)


@pytest.fixture
def wired(slack: SlackStandIn, clock: ShiftedClock) -> Iterator[Wired]:
    received = Received()

    async def push(request: Request) -> Response:
        received.pushes.append((dict(request.headers), json.loads(await request.body())))
        return Response(status_code=received.push_status)

    async def events(request: Request) -> Response:
        received.events.append((dict(request.headers), await request.body()))
        return Response(status_code=200)

    app_stand_in = Starlette(
        routes=[
            Route(PUSH_PATH, push, methods=["POST"]),
            Route(EVENTS_PATH, events, methods=["POST"]),
        ]
    )
    google, google_server = start_google_stand_in()
    servers: list[RunningServer] = [google_server]
    try:
        app_server = serve_in_thread(app_stand_in)
        servers.append(app_server)
        google.add_mailbox(MAILBOX)
        app = FastAPI()
        mount_console(
            app,
            Console(
                slack=slack,
                google=google,
                clock=clock,
                signing_secret=SIGNING_SECRET,
                app_url=lambda: app_server.url,
                user_id=DEFAULT_ADMIN_USER_ID,
                mailbox=MAILBOX,
                push_audience=AUDIENCE,
                start_channel="C0SANDBOXGEN",
            ),
        )
        yield Wired(TestClient(app, base_url=CONSOLE_URL), google, google_server.url, received)
    finally:
        for server in servers:
            server.stop()


def test_the_page_opens_on_its_start_channel(wired: Wired) -> None:
    page = wired.client.get("/sandbox")

    assert 'data-start="C0SANDBOXGEN"' in page.text
    assert wired.client.get("/sandbox/panes").json()["title"] == "#general"


def test_a_sample_reply_comes_from_the_contact_threaded_to_the_sent_email_with_a_push(
    wired: Wired,
) -> None:
    outreach = wired.send_outreach(f"Dana Whitfield <{CONTACT}>", "Turn times are down, Dana")
    choice = wired.client.get("/sandbox/panes").json()["sent_choices"][0]

    answer = wired.deliver(in_reply_to=choice["id"], sample="unsubscribe", body="ignored")

    assert answer.status_code == 200, answer.text
    assert answer.json()["note"].startswith(
        f"delivered “Unsubscribe request” from {CONTACT} to {MAILBOX}; Gmail's push answered 204."
    )
    received = wired.google.gmail.messages(MAILBOX)[-1]
    parsed = received.parsed()
    assert parsed["From"] == f"Dana Whitfield <{CONTACT}>"
    assert parsed["In-Reply-To"] == outreach["Message-ID"]
    assert parsed["Subject"] == "Re: Turn times are down, Dana"
    assert "remove me from your mailing list" in parsed.get_body().get_content()
    assert received.thread_id == wired.google.gmail.sent(MAILBOX)[0].thread_id
    ((headers, body),) = wired.received.pushes
    assert headers["authorization"].startswith("Bearer ")
    assert json.loads(base64.b64decode(body["message"]["data"]))["emailAddress"] == MAILBOX
    deliveries = wired.client.get("/sandbox/panes").json()["deliveries"]
    assert "“Unsubscribe request”" in deliveries
    assert "Salesbot answered 204" in deliveries
    assert f'data-suggest="/engagement {CONTACT}"' in deliveries


def test_the_bounce_sample_comes_from_the_mailer_daemon_as_a_delivery_report(
    wired: Wired,
) -> None:
    wired.send_outreach(CONTACT, "Turn times are down, Dana")
    choice = wired.client.get("/sandbox/panes").json()["sent_choices"][0]

    answer = wired.deliver(in_reply_to=choice["id"], sample="bounce")

    assert answer.status_code == 200, answer.text
    assert "from mailer-daemon@googlemail.com" in answer.json()["note"]
    parsed = wired.google.gmail.messages(MAILBOX)[-1].parsed()
    assert parsed["From"] == "Mail Delivery Subsystem <mailer-daemon@googlemail.com>"
    assert parsed.get_content_type() == "multipart/report"
    assert parsed["X-Failed-Recipients"] == CONTACT


def test_a_sample_needs_a_sent_email_and_a_known_key(wired: Wired) -> None:
    wired.send_outreach(CONTACT, "Turn times are down, Dana")
    choice = wired.client.get("/sandbox/panes").json()["sent_choices"][0]

    no_email = wired.deliver(sample="positive")
    unknown = wired.deliver(in_reply_to=choice["id"], sample="lottery")

    assert no_email.status_code == 400
    assert "pick it under “In reply to”" in no_email.json()["note"]
    assert unknown.status_code == 400
    assert unknown.json()["note"].startswith("no sample reply 'lottery'; the form offers positive,")
    assert len(wired.google.gmail.messages(MAILBOX)) == 1  # only the sent one
    assert wired.received.pushes == []


def test_a_push_the_app_refuses_is_said_so_and_logged(wired: Wired) -> None:
    wired.received.push_status = 403

    answer = wired.deliver(from_addr=CONTACT, subject="Hello", body="Do you cover Hays?")

    assert answer.status_code == 400
    assert answer.json()["note"] == (
        "the email is in the mailbox; the app answered its push with 403"
    )
    assert (
        "Gmail's push refused: Salesbot answered 403"
        in (wired.client.get("/sandbox/panes").json()["deliveries"])
    )


def test_a_push_that_reaches_no_app_is_said_so(client: TestClient) -> None:
    answer = client.post(
        "/sandbox/mail",
        data={"from_addr": CONTACT, "subject": "Hello", "body": "x"},
        headers=FROM_CONSOLE,
    )

    assert answer.status_code == 400
    assert answer.json()["note"].startswith(
        "the email is in the mailbox, but Gmail's push did not reach the app:"
    )


def test_opening_the_home_tab_sends_the_app_a_signed_app_home_opened_event(
    wired: Wired,
) -> None:
    answer = wired.client.post("/sandbox/home", headers=FROM_CONSOLE)

    assert answer.status_code == 200, answer.text
    ((headers, body),) = wired.received.events
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(body, headers)
    event = json.loads(body)
    assert event["type"] == "event_callback"
    assert event["event"]["type"] == "app_home_opened"
    assert event["event"]["user"] == DEFAULT_ADMIN_USER_ID
    assert event["event"]["tab"] == "home"


# --- a click binds to the element the page showed ------------------------------------------


def _card(slack: SlackStandIn, *buttons: tuple[str, str]) -> str:
    """Post a card with these (action_id, value) buttons in an actions block; its ts."""
    elements = [
        {"type": "button", "action_id": a, "text": {"type": "plain_text", "text": a}, "value": v}
        for a, v in buttons
    ]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Card 7"}},
        {"type": "actions", "block_id": "card_actions", "elements": elements},
    ]
    posted = slack.call(
        "chat.postMessage",
        {"channel": "C0SANDBOXGEN", "text": "Card 7", "blocks": blocks},
        token=slack.default_token,
    ).body
    return str(posted["ts"])


def _click(client: TestClient, ts: str, **shown: str) -> httpx.Response:
    form = {"container": "message", "channel": "C0SANDBOXGEN", "ts": ts, "loc": "b1.e0", **shown}
    return client.post("/sandbox/action", data=form, headers=FROM_CONSOLE)


def test_a_button_shows_what_it_is_besides_where_it_is(
    client: TestClient, slack: SlackStandIn
) -> None:
    _card(slack, ("approve", "7:f1"))

    messages = client.get("/sandbox/panes", params={"channel": "C0SANDBOXGEN"}).json()["messages"]

    assert (
        'data-loc="b1.e0" data-action-id="approve" data-block-id="card_actions"'
        ' data-button-value="7:f1"' in messages
    )


def test_a_click_on_the_element_shown_is_sent_to_the_app(wired: Wired, slack: SlackStandIn) -> None:
    ts = _card(slack, ("approve", "7:f1"))

    answer = _click(
        wired.client, ts, action_id="approve", block_id="card_actions", button_value="7:f1"
    )

    assert answer.status_code == 200, answer.text
    ((_, body),) = wired.received.events
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["actions"][0]["action_id"] == "approve"
    assert payload["actions"][0]["value"] == "7:f1"


def test_a_click_on_a_card_that_changed_since_it_was_drawn_is_refused_and_sends_nothing(
    wired: Wired, slack: SlackStandIn
) -> None:
    ts = _card(slack, ("approve", "7:f1"), ("reject", "7:f1"))
    shown = {"action_id": "approve", "block_id": "card_actions", "button_value": "7:f1"}
    # The card is updated meanwhile: another button where Approve was, then a new draft.
    for buttons in ([("reject", "7:f1")], [("approve", "7:f2")]):
        elements = [
            {"type": "button", "action_id": a, "text": {"type": "plain_text", "text": a}}
            | {"value": v}
            for a, v in buttons
        ]
        slack.call(
            "chat.update",
            {
                "channel": "C0SANDBOXGEN",
                "ts": ts,
                "text": "Card 7",
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": "Card 7"}},
                    {"type": "actions", "block_id": "card_actions", "elements": elements},
                ],
            },
            token=slack.default_token,
        )
        moved = _click(wired.client, ts, **shown)

        assert moved.status_code == 409, buttons
        assert moved.json() == {
            "ok": False,
            "note": "This card changed since you saw it — look again.",
            "changed": True,
        }
    gone = _click(wired.client, "1.000001", **shown)

    assert gone.status_code == 409
    assert wired.received.events == []


def test_a_menu_option_the_element_no_longer_offers_is_refused(
    wired: Wired, slack: SlackStandIn
) -> None:
    menu = {
        "type": "overflow",
        "action_id": "card_more",
        "options": [{"text": {"type": "plain_text", "text": "Snooze"}, "value": "snooze:7"}],
    }
    posted = slack.call(
        "chat.postMessage",
        {
            "channel": "C0SANDBOXGEN",
            "text": "Card 7",
            "blocks": [{"type": "actions", "block_id": "more", "elements": [menu]}],
        },
        token=slack.default_token,
    ).body
    shown = {"action_id": "card_more", "block_id": "more"}
    form = {"container": "message", "channel": "C0SANDBOXGEN", "ts": posted["ts"], "loc": "b0.e0"}

    stale = wired.client.post(
        "/sandbox/action", data={**form, **shown, "value": "view:7"}, headers=FROM_CONSOLE
    )
    offered = wired.client.post(
        "/sandbox/action", data={**form, **shown, "value": "snooze:7"}, headers=FROM_CONSOLE
    )

    assert stale.status_code == 409
    assert offered.status_code == 200, offered.text
    assert len(wired.received.events) == 1


# --- the console answers its own page on a loopback name only --------------------------------


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8000", "127.0.0.1:51234", "[::1]:8000", "LOCALHOST:80"]
)
def test_the_console_answers_at_a_loopback_name_with_any_port(
    client: TestClient, host: str
) -> None:
    origin = f"http://{host}"

    assert client.get("/sandbox", headers={"host": host}).status_code == 200
    assert client.get("/sandbox/panes", headers={"host": host}).status_code == 200
    moved = client.post(
        "/sandbox/clock",
        data={"hours": "1"},
        headers={**FROM_CONSOLE, "host": host, "origin": origin},
    )
    assert moved.status_code == 200, moved.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "10.0.0.5:8000", ""])
def test_a_page_of_a_rebound_domain_can_neither_read_nor_act(
    client: TestClient, clock: ShiftedClock, host: str
) -> None:
    for answer in (
        client.get("/sandbox", headers={"host": host}),
        client.get("/sandbox/panes", headers={"host": host}),
        client.get("/sandbox/files/F0ANYTHING", headers={"host": host}),
        client.post(
            "/sandbox/clock",
            data={"hours": "24"},
            headers={**FROM_CONSOLE, "host": host, "origin": f"http://{host}"},
        ),
    ):
        assert answer.status_code == 421, answer.request.url
        assert answer.json()["detail"].startswith(
            "the sandbox console answers only at a loopback address (localhost, 127.0.0.1 or"
            " [::1]), not at "
        )
    assert clock.offset == timedelta(0)


def test_a_request_from_another_origin_is_refused(client: TestClient, clock: ShiftedClock) -> None:
    for origin in ("http://evil.example", "null", "https://localhost:8000", "http://localhost:9"):
        moved = client.post(
            "/sandbox/clock", data={"hours": "24"}, headers={**FROM_CONSOLE, "origin": origin}
        )
        read = client.get("/sandbox/panes", headers={"origin": origin})

        assert moved.status_code == 403, origin
        assert read.status_code == 403, origin
        assert moved.json()["detail"] == (
            f"the sandbox console takes requests from its own page only, not from {origin}"
        )
    assert clock.offset == timedelta(0)


# --- the metrics and the access log ----------------------------------------------------------


def _bare_console(slack: SlackStandIn, clock: ShiftedClock) -> Console:
    return Console(
        slack=slack,
        google=GoogleStandIn(),
        clock=clock,
        signing_secret=SIGNING_SECRET,
        app_url=lambda: "http://127.0.0.1:9",
        user_id=DEFAULT_ADMIN_USER_ID,
        mailbox=MAILBOX,
        push_audience=AUDIENCE,
    )


def test_the_consoles_routes_are_counted_under_their_whole_template(
    slack: SlackStandIn, clock: ShiftedClock
) -> None:
    app = FastAPI()
    app.add_middleware(ObservabilityMiddleware)
    mount_console(app, _bare_console(slack, clock))
    client = TestClient(app, base_url=CONSOLE_URL)

    def count(route: str, method: str) -> float:
        sample = metrics.HTTP_REQUESTS.labels(route, method, "2xx")
        return float(sample._value.get())

    before = {r: count(r, m) for r, m in (("/sandbox/clock", "POST"), ("/sandbox/panes", "GET"))}
    client.post("/sandbox/clock", data={"hours": "1"}, headers=FROM_CONSOLE)
    client.get("/sandbox/panes")

    assert count("/sandbox/clock", "POST") == before["/sandbox/clock"] + 1
    assert count("/sandbox/panes", "GET") == before["/sandbox/panes"] + 1
    assert count("/clock", "POST") == 0


def _access(path: str, status: int) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", status),
        None,
    )


def test_the_pages_successful_polls_stay_out_of_the_access_log() -> None:
    quiet = QuietPolls()

    assert not quiet.filter(_access("/sandbox/panes?channel=C0SBXREVIEW", 200))
    assert not quiet.filter(_access("/sandbox/panes", 200))
    assert quiet.filter(_access("/sandbox/panes?channel=C0SBXREVIEW", 500))
    assert quiet.filter(_access("/sandbox/panesX", 200))
    assert quiet.filter(_access("/sandbox/action", 200))
    assert quiet.filter(_access("/api/cards/7", 200))


def test_mounting_the_console_quiets_the_polls_once(
    slack: SlackStandIn, clock: ShiftedClock
) -> None:
    for _ in range(2):
        mount_console(FastAPI(), _bare_console(slack, clock))

    quiet = [f for f in logging.getLogger("uvicorn.access").filters if isinstance(f, QuietPolls)]

    assert len(quiet) == 1


def test_the_mailbox_lists_who_a_thread_is_with_the_rep_sent_mail_by_its_recipient(
    wired: Wired,
) -> None:
    wired.send_outreach(f"Dana Whitfield <{CONTACT}>", "Turn times are down, Dana")
    sent_only = wired.client.get("/sandbox/panes").json()["mailbox"]
    choice = wired.client.get("/sandbox/panes").json()["sent_choices"][0]
    wired.deliver(in_reply_to=choice["id"], sample="positive")

    answered = wired.client.get("/sandbox/panes").json()["mailbox"]

    assert f'<span class="mail-people">to {CONTACT}</span>' in sent_only
    assert MAILBOX not in sent_only.split('class="mail-people">')[1].split("<")[0]
    assert f'<span class="mail-people">{CONTACT}</span>' in answered
