"""POST /api/integrations/gmail/push: Pub/Sub OIDC tokens checked through google-auth against
the stand-in's certs URL, notifications stored once, the sync run off the request path."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.inbound import PushNotice
from handlers.api.deps import Services
from handlers.gmail_push import PUSH_PATH
from sandbox.pubsub import PubSubOidcSigner
from storage import models as m
from storage.db import make_session_factory
from tests.support.api import make_settings
from tests.support.builders import make_org
from tests.support.gmail_inbound import (
    AUDIENCE,
    DANA,
    REP,
    TOPIC,
    Mailbox,
    connect_mailbox,
    wait_for,
)
from tests.support.google import GoogleServer, make_email


@pytest.fixture
def mailbox(google: GoogleServer, session_factory: Callable[[], Session]) -> Mailbox:
    """The rep's mailbox on the test's rolled-back transaction."""
    return connect_mailbox(google, session_factory)


@pytest.fixture
def committed_mailbox(google: GoogleServer, committed_engine: Engine) -> Mailbox:
    """The rep's mailbox on a database with real commits, for threads."""
    return connect_mailbox(google, make_session_factory(committed_engine))


@pytest.fixture
def committed_client(committed_mailbox: Mailbox) -> Iterator[TestClient]:
    with TestClient(committed_mailbox.app()) as test_client:
        yield test_client


@pytest.fixture
def client(mailbox: Mailbox) -> Iterator[TestClient]:
    with TestClient(mailbox.app()) as test_client:
        yield test_client


def _post(client: TestClient, headers: dict[str, str], body: Any) -> Any:
    if isinstance(body, bytes):
        return client.post(PUSH_PATH, content=body, headers=headers)
    return client.post(PUSH_PATH, json=body, headers=headers)


def test_a_push_delivered_three_times_is_stored_once_and_its_message_parsed_once(
    mailbox: Mailbox, client: TestClient
) -> None:
    gmail_id = mailbox.deliver(make_email(sender=DANA, to=REP, subject="Re: turn times"))
    headers, body = mailbox.push_request()

    answers = [_post(client, headers, body) for _ in range(3)]
    processed = mailbox.processor.run_pending()

    assert [a.status_code for a in answers] == [204, 204, 204]
    assert [a.content for a in answers] == [b"", b"", b""]
    assert processed == 1
    assert [(n.status, n.history_id) for n in mailbox.notifications()] == [
        ("done", mailbox.google.gmail.history_id(REP))
    ]
    stored = mailbox.inbound()
    assert [(e.gmail_message_id, e.status, e.subject, e.from_email) for e in stored] == [
        (gmail_id, "parsed", "Re: turn times", DANA)
    ]
    assert mailbox.gmail_calls("messages.get") == 1
    assert mailbox.account().history_id == mailbox.google.gmail.history_id(REP)


def test_the_same_push_delivered_concurrently_is_stored_once(
    committed_mailbox: Mailbox, committed_client: TestClient
) -> None:
    mailbox = committed_mailbox
    mailbox.deliver(make_email(sender=DANA, to=REP))
    headers, body = mailbox.push_request()

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(lambda _: _post(committed_client, headers, body), range(3)))

    assert [a.status_code for a in answers] == [204, 204, 204]
    assert len(mailbox.notifications()) == 1


def test_many_pushes_at_once_are_each_stored_once(
    committed_mailbox: Mailbox, committed_client: TestClient
) -> None:
    mailbox = committed_mailbox
    headers, _ = mailbox.push_request()
    bodies = [mailbox.push_request(message_id=f"burst-{n}")[1] for n in range(40)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda body: _post(committed_client, headers, body), bodies * 2))

    assert [a.status_code for a in answers] == [204] * 80
    assert sorted(n.pubsub_message_id for n in mailbox.notifications()) == sorted(
        f"burst-{n}" for n in range(40)
    )


def test_the_push_is_answered_before_the_mailbox_is_synced(
    mailbox: Mailbox, client: TestClient
) -> None:
    mailbox.deliver(make_email(sender=DANA, to=REP))

    answer = mailbox.post_push(client)

    assert answer.status_code == 204
    assert [n.status for n in mailbox.notifications()] == ["pending"]
    assert mailbox.count_inbound() == 0
    assert mailbox.gmail_calls("history.list") == 0


def _forged(mailbox: Mailbox) -> str:
    return PubSubOidcSigner().sign(AUDIENCE)


def _forged_with_known_kid(mailbox: Mailbox) -> str:
    return PubSubOidcSigner().sign(AUDIENCE, kid=mailbox.google.signer.kid)


def _expired(mailbox: Mailbox) -> str:
    return mailbox.google.signer.sign(AUDIENCE, issued_at=datetime.now(UTC) - timedelta(hours=2))


def _wrong_audience(mailbox: Mailbox) -> str:
    return mailbox.google.signer.sign("https://elsewhere.example/push")


def _wrong_service_account(mailbox: Mailbox) -> str:
    return mailbox.google.signer.sign(AUDIENCE, email="intruder@evil.iam.gserviceaccount.com")


def _unverified_email(mailbox: Mailbox) -> str:
    return mailbox.google.signer.sign(AUDIENCE, email_verified=False)


def _wrong_issuer(mailbox: Mailbox) -> str:
    return mailbox.google.signer.sign(AUDIENCE, issuer="https://evil.example")


@pytest.mark.parametrize(
    ("make_token", "status", "code", "message"),
    [
        (_forged, 401, "unauthorized", "push token is signed by a key Google does not publish"),
        (_forged_with_known_kid, 401, "unauthorized", "push token signature does not verify"),
        (_expired, 401, "unauthorized", "push token has expired"),
        (
            _wrong_audience,
            403,
            "forbidden",
            "push token is for another audience than PUBSUB_AUDIENCE",
        ),
        (
            _wrong_service_account,
            403,
            "forbidden",
            "push token is for another service account than PUBSUB_SERVICE_ACCOUNT",
        ),
        (_unverified_email, 403, "forbidden", "push token's email is not verified"),
        (_wrong_issuer, 403, "forbidden", "push token was not issued by Google"),
    ],
    ids=[
        "forged",
        "forged_with_known_kid",
        "expired",
        "wrong_audience",
        "wrong_service_account",
        "unverified_email",
        "wrong_issuer",
    ],
)
def test_a_push_with_a_bad_token_is_refused_with_the_reason_and_nothing_is_stored(
    mailbox: Mailbox,
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    make_token: Any,
    status: int,
    code: str,
    message: str,
) -> None:
    mailbox.deliver(make_email(sender=DANA, to=REP))
    token = make_token(mailbox)
    _, body = mailbox.push_request()

    with caplog.at_level(logging.DEBUG):
        answer = _post(client, {"Authorization": f"Bearer {token}"}, body)
    mailbox.processor.run_pending()

    assert answer.status_code == status
    assert answer.json() == {"error": {"code": code, "message": message, "details": []}}
    assert mailbox.notifications() == []
    assert mailbox.count_inbound() == 0
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing Authorization header: a push must carry a Bearer token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "malformed Authorization header: expected "
         "'Bearer <token>'"),
        ({"Authorization": "Bearer "}, "malformed Authorization header: expected "
         "'Bearer <token>'"),
        ({"Authorization": "Bearer not-a-jwt"}, "push token is malformed"),
    ],
    ids=["missing", "basic", "empty_bearer", "not_a_jwt"],
)  # fmt: skip
def test_a_push_without_a_usable_bearer_token_is_refused_with_401(
    mailbox: Mailbox, client: TestClient, headers: dict[str, str], message: str
) -> None:
    _, body = mailbox.push_request()

    answer = _post(client, headers, body)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {"error": {"code": "unauthorized", "message": message, "details": []}}
    assert mailbox.notifications() == []


def _with_message(**message: Any) -> dict[str, Any]:
    return {"message": message, "subscription": "projects/p/subscriptions/s"}


def _data(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (b"{not json", 400, "invalid_push", "push body is not JSON"),
        ({"subscription": "s"}, 400, "invalid_push", "push body has no 'message' object"),
        (_with_message(messageId="1"), 400, "invalid_push", "push message has no 'data'"),
        (
            _with_message(messageId="1", data="%%% not base64 %%%"),
            400,
            "invalid_push",
            "push message 'data' is not valid base64",
        ),
        (
            _with_message(messageId="1", data=base64.b64encode(b"plain text").decode()),
            400,
            "invalid_push",
            "push message 'data' is not JSON",
        ),
        (
            _with_message(messageId="1", data=_data({"emailAddress": REP})),
            400,
            "invalid_push",
            "push data is not a Gmail notification: it needs 'emailAddress' and 'historyId'",
        ),
        (
            _with_message(data=_data({"emailAddress": REP, "historyId": 5})),
            400,
            "invalid_push",
            "push message has no 'messageId'",
        ),
        (
            _with_message(messageId="1", data=_data({"emailAddress": REP, "historyId": 2**63})),
            400,
            "invalid_push",
            "push data has an invalid 'historyId'",
        ),
        (
            _with_message(messageId="1\x00", data=_data({"emailAddress": REP, "historyId": 5})),
            400,
            "invalid_push",
            "push message has an invalid 'messageId'",
        ),
        (
            b'{"message": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
            400,
            "invalid_push",
            "push body is nested too deep",
        ),
        (
            _with_message(
                messageId="1",
                data=base64.b64encode(b"[" * 20_000 + b"]" * 20_000).decode(),
            ),
            400,
            "invalid_push",
            "push message 'data' is nested too deep",
        ),
        (
            _with_message(
                messageId="1", data=_data({"emailAddress": "nobody@else.example", "historyId": 5})
            ),
            404,
            "unknown_mailbox",
            "no Gmail account is connected for nobody@else.example",
        ),
    ],
    ids=[
        "not_json",
        "no_message",
        "no_data",
        "bad_base64",
        "data_not_json",
        "no_history_id",
        "no_message_id",
        "history_id_too_large",
        "control_character_in_message_id",
        "body_nested_too_deep",
        "data_nested_too_deep",
        "unknown_mailbox",
    ],
)
def test_a_push_whose_body_is_unusable_is_refused_with_the_reason_and_nothing_is_stored(
    mailbox: Mailbox, client: TestClient, body: Any, status: int, code: str, message: str
) -> None:
    headers, _ = mailbox.push_request()

    answer = _post(client, headers, body)
    mailbox.processor.run_pending()

    assert answer.status_code == status
    assert answer.json() == {"error": {"code": code, "message": message, "details": []}}
    assert mailbox.notifications() == []
    assert mailbox.count_inbound() == 0


def test_a_history_id_sent_as_a_string_is_accepted(mailbox: Mailbox, client: TestClient) -> None:
    history_id = mailbox.google.gmail.history_id(REP)

    answer = mailbox.post_push(client)
    headers, body = mailbox.google.push_request(REP, audience=AUDIENCE)
    body["message"]["data"] = _data({"emailAddress": REP.upper(), "historyId": str(history_id)})
    second = _post(client, headers, body)

    assert (answer.status_code, second.status_code) == (204, 204)
    assert [n.history_id for n in mailbox.notifications()] == [history_id, history_id]


def test_certificates_are_fetched_once_for_many_pushes(
    mailbox: Mailbox, client: TestClient
) -> None:
    answers = [mailbox.post_push(client).status_code for _ in range(5)]

    assert answers == [204] * 5
    assert mailbox.verifier.certificate_fetches == 1


def test_a_rotated_key_is_learnt_by_refetching_the_certificates_at_most_once_a_minute(
    mailbox: Mailbox, client: TestClient
) -> None:
    first = mailbox.post_push(client)
    mailbox.google.signer.rotate_key(keep_previous=False)

    too_soon = mailbox.post_push(client)
    mailbox.certs_clock.now += 61
    after_a_minute = mailbox.post_push(client)

    assert [first.status_code, too_soon.status_code, after_a_minute.status_code] == [204, 401, 204]
    assert too_soon.json()["error"]["message"] == (
        "push token is signed by a key Google does not publish"
    )
    assert mailbox.verifier.certificate_fetches == 2


def test_the_real_app_stores_the_push_syncs_and_understands_the_message_in_the_background(
    committed_mailbox: Mailbox, committed_engine: Engine
) -> None:
    mailbox = committed_mailbox
    from bot.app import build_app

    settings = make_settings(
        str(committed_engine.url.render_as_string(hide_password=False)),
        PUBSUB_AUDIENCE=AUDIENCE,
        PUBSUB_SERVICE_ACCOUNT="gmail-push@salesbot-sandbox.iam.gserviceaccount.com",
        PUBSUB_TOPIC=TOPIC,
        GOOGLE_CERTS_URL=mailbox.stand_in.urls.certs_url,
        GMAIL_API_URL=mailbox.stand_in.urls.gmail_api_url,
    )
    services = Services(
        engine=committed_engine, session_factory=mailbox.session_factory, clock=mailbox.clock
    )
    app = build_app(
        settings,
        services=services,
        start_background=True,
        gmail_service_for_account=mailbox.service,
    )
    gmail_id = mailbox.deliver(make_email(sender=DANA, to=REP, subject="Order 4471"))

    with TestClient(app) as client:
        answer = mailbox.post_push(client)
        # The real app's pipeline takes the parsed message further at once: wait for the end.
        processed = wait_for(lambda: [e.status for e in mailbox.inbound()] == ["processed"])

    assert answer.status_code == 204
    assert processed
    assert [(e.gmail_message_id, e.subject) for e in mailbox.inbound()] == [
        (gmail_id, "Order 4471")
    ]
    assert [n.status for n in mailbox.notifications()] == ["done"]


def test_the_push_endpoint_answers_503_when_pubsub_is_not_configured(
    committed_mailbox: Mailbox, committed_engine: Engine
) -> None:
    mailbox = committed_mailbox
    from bot.app import build_app

    settings = make_settings(str(committed_engine.url.render_as_string(hide_password=False)))
    services = Services(
        engine=committed_engine, session_factory=mailbox.session_factory, clock=mailbox.clock
    )
    app = build_app(settings, services=services, start_background=False)

    with TestClient(app) as client:
        answer = mailbox.post_push(client)

    assert answer.status_code == 503
    assert answer.json()["error"] == {
        "code": "not_configured",
        "message": "Gmail push is not configured: set PUBSUB_AUDIENCE and PUBSUB_SERVICE_ACCOUNT",
        "details": [],
    }
    assert mailbox.notifications() == []


def test_a_mailbox_connected_in_two_organizations_is_synced_in_each(
    mailbox: Mailbox, client: TestClient
) -> None:
    with mailbox.session_factory() as session:
        other_org = make_org(session)
        other = m.GmailAccount(
            org_id=other_org.id,
            email=REP.upper(),
            status="connected",
            history_id=mailbox.account().history_id,
            last_synced_at=mailbox.clock.now(),
        )
        session.add(other)
        session.commit()
        other_id = other.id
    gmail_id = mailbox.deliver(make_email(sender=DANA, to=REP))

    answer = mailbox.post_push(client)
    mailbox.processor.run_pending()

    assert answer.status_code == 204
    assert sorted((n.gmail_account_id, n.status) for n in mailbox.notifications()) == [
        (mailbox.account_id, "done"),
        (other_id, "done"),
    ]
    assert sorted(
        (e.gmail_account_id, e.gmail_message_id, e.status) for e in mailbox.inbound()
    ) == [
        (mailbox.account_id, gmail_id, "parsed"),
        (other_id, gmail_id, "parsed"),
    ]


def test_a_batch_of_pushes_is_stored_with_an_outcome_for_each(mailbox: Mailbox) -> None:
    with mailbox.session_factory() as session:
        other_org = make_org(session)
        session.add(m.GmailAccount(org_id=other_org.id, email="Shared@Firm.example"))
        session.add(m.GmailAccount(org_id=mailbox.org_id, email="shared@firm.example"))
        session.commit()
    now = mailbox.clock.now()
    [stored_before] = mailbox.store.store_pushes([_notice("seen", REP)], now=now)

    outcomes = mailbox.store.store_pushes(
        [
            _notice("new", REP.upper()),
            _notice("seen", REP),
            _notice("lost", "nobody@else.example"),
            _notice("new", REP),
            _notice("both", "shared@firm.example"),
        ],
        now=now,
    )

    assert (stored_before, outcomes) == (1, [1, 0, None, 0, 2])
    assert sorted((n.pubsub_message_id, n.email_address) for n in mailbox.notifications()) == [
        ("both", "shared@firm.example"),
        ("both", "shared@firm.example"),
        ("new", REP),
        ("seen", REP),
    ]


def _notice(message_id: str, email: str) -> PushNotice:
    return PushNotice(message_id=message_id, email=email, history_id=7)
