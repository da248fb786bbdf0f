"""The Google stand-ins driven by the real google-api-python-client, google-auth and oauthlib."""

from __future__ import annotations

import base64
import http.client
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import googleapiclient
import httpx
import pytest
import requests
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2 import id_token
from google_auth_oauthlib.flow import Flow
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseUpload
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError

from sandbox.gmail_api import METHOD_SCOPES, ROUTE_PATHS
from sandbox.google import GoogleStandIn, GoogleUrls
from sandbox.google_oauth import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SCOPE_GMAIL_METADATA,
    SCOPE_GMAIL_READONLY,
    SCOPE_GMAIL_SEND,
    SCOPE_OPENID,
    SCOPE_USERINFO_EMAIL,
)
from sandbox.pubsub import PubSubOidcSigner, push_body
from tests.support.google import (
    GoogleServer,
    decode_raw,
    encode_raw,
    follow_consent,
    gmail_service,
    make_email,
    running_google_stand_in,
    user_credentials,
)

REP = "rep@appraisalfirm.example"
DANA = "dana@pinnaclelending.example"
OUTSIDER = "lo@otherlender.example"
AUDIENCE = "https://salesbot.example/gmail/push"
REDIRECT_URI = "http://127.0.0.1:3000/oauth/google/callback"
SCOPES = [SCOPE_OPENID, SCOPE_USERINFO_EMAIL, SCOPE_GMAIL_SEND, SCOPE_GMAIL_READONLY]
DISCOVERY = Path(googleapiclient.__file__).parent / "discovery_cache/documents/gmail.v1.json"


@pytest.fixture(scope="module")
def stand_in() -> Iterator[GoogleServer]:
    with running_google_stand_in() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_state(stand_in: GoogleServer, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in.google.reset()
    stand_in.clock.set_to_real_time()
    # oauthlib refuses http:// endpoints unless told; the stand-in serves plain http.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture
def google(stand_in: GoogleServer) -> GoogleStandIn:
    return stand_in.google


@pytest.fixture
def urls(stand_in: GoogleServer) -> GoogleUrls:
    return stand_in.urls


@pytest.fixture
def rep_gmail(google: GoogleStandIn, urls: GoogleUrls) -> Any:
    """A Gmail client for the rep's mailbox, built as Salesbot builds it."""
    google.add_mailbox(REP)
    return gmail_service(urls, user_credentials(urls, google.oauth.issue_grant(REP)))


def _flow(urls: GoogleUrls) -> Flow:
    config = {
        "web": {
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "auth_uri": urls.auth_uri,
            "token_uri": urls.token_uri,
            "redirect_uris": [REDIRECT_URI],
        }
    }
    return Flow.from_client_config(config, scopes=SCOPES, redirect_uri=REDIRECT_URI)


def _error_body(error: HttpError) -> dict[str, Any]:
    return json.loads(error.content)


# -- OAuth --------------------------------------------------------------------------------


def test_pkce_code_exchange_gives_credentials_that_open_the_consenting_users_mailbox(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.add_mailbox(REP)
    google.oauth.set_consenting_user(REP)
    flow = _flow(urls)
    authorization_url, state = flow.authorization_url(prompt="consent")
    location = follow_consent(authorization_url)

    flow.fetch_token(authorization_response=location)
    credentials = flow.credentials
    profile = gmail_service(urls, credentials).users().getProfile(userId="me").execute()

    query = parse_qs(urlsplit(authorization_url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["access_type"] == ["offline"]
    assert parse_qs(urlsplit(location).query)["state"] == [state]
    assert profile == {
        "emailAddress": REP,
        "messagesTotal": 0,
        "threadsTotal": 0,
        "historyId": str(google.gmail.history_id(REP)),
    }
    assert credentials.refresh_token == google.oauth.grants(REP)[0].refresh_tokens[0]
    claims = id_token.verify_token(
        credentials.id_token,
        AuthRequest(),
        audience=SANDBOX_CLIENT_ID,
        certs_url=urls.certs_url,
    )
    assert (claims["iss"], claims["email"], claims["email_verified"]) == (
        "https://accounts.google.com",
        REP,
        True,
    )


def test_code_exchange_with_a_wrong_code_verifier_is_refused_as_invalid_grant(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.oauth.set_consenting_user(REP)
    flow = _flow(urls)
    authorization_url, _ = flow.authorization_url(prompt="consent")
    code = parse_qs(urlsplit(follow_consent(authorization_url)).query)["code"][0]

    answer = requests.post(
        urls.token_uri,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": "x" * 64,
            "redirect_uri": REDIRECT_URI,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        },
        timeout=10,
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid code verifier.",
    }


def test_an_authorization_code_works_only_once(google: GoogleStandIn, urls: GoogleUrls) -> None:
    google.oauth.set_consenting_user(REP)
    flow = _flow(urls)
    authorization_url, _ = flow.authorization_url(prompt="consent")
    location = follow_consent(authorization_url)
    flow.fetch_token(authorization_response=location)

    replay = _flow(urls)
    replay.code_verifier = flow.code_verifier
    with pytest.raises(InvalidGrantError):
        replay.fetch_token(code=parse_qs(urlsplit(location).query)["code"][0])

    assert [r.error for r in google.oauth.token_requests] == [None, "invalid_grant"]


def test_refused_consent_redirects_with_access_denied(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.oauth.set_consenting_user(REP)
    google.oauth.deny_consent()
    authorization_url, _ = _flow(urls).authorization_url(state="s-1")

    location = follow_consent(authorization_url)

    assert location == f"{REDIRECT_URI}?error=access_denied&state=s-1"


def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.oauth.add_client("strict-client", "strict-secret", redirect_uris=[REDIRECT_URI])
    google.oauth.set_consenting_user(REP)

    answer = requests.get(
        urls.auth_uri,
        params={
            "client_id": "strict-client",
            "redirect_uri": "https://evil.example/cb",
            "response_type": "code",
            "scope": SCOPE_GMAIL_SEND,
        },
        allow_redirects=False,
        timeout=10,
    )

    assert answer.status_code == 400
    assert "Error 400: redirect_uri_mismatch" in answer.text


def test_second_consent_without_prompt_consent_returns_no_refresh_token(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.oauth.set_consenting_user(REP)
    tokens = []
    for _ in range(2):
        flow = _flow(urls)
        authorization_url, _ = flow.authorization_url()
        tokens.append(flow.fetch_token(authorization_response=follow_consent(authorization_url)))

    assert "refresh_token" in tokens[0]
    assert "refresh_token" not in tokens[1]


def test_shorthand_email_scope_comes_back_expanded_like_google(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.oauth.set_consenting_user(REP)
    answer = requests.get(
        urls.auth_uri,
        params={
            "client_id": SANDBOX_CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "scope": f"email {SCOPE_GMAIL_SEND}",
        },
        allow_redirects=False,
        timeout=10,
    )

    granted = parse_qs(urlsplit(answer.headers["Location"]).query)["scope"][0]
    assert granted.split() == [SCOPE_OPENID, SCOPE_USERINFO_EMAIL, SCOPE_GMAIL_SEND]


def test_expired_access_token_is_refreshed_once_and_the_call_succeeds(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.add_mailbox(REP)
    tokens = google.oauth.issue_grant(REP)
    credentials = user_credentials(urls, tokens)
    google.oauth.expire_access_tokens(REP)

    profile = gmail_service(urls, credentials).users().getProfile(userId="me").execute()

    assert profile["emailAddress"] == REP
    assert credentials.token != tokens.access_token
    assert [(r.grant_type, r.error) for r in google.oauth.token_requests] == [
        ("refresh_token", None)
    ]
    assert [c.status for c in google.gmail.calls] == [401, 200]


def test_access_token_stops_working_when_its_lifetime_is_over(
    stand_in: GoogleServer, urls: GoogleUrls
) -> None:
    google = stand_in.google
    google.add_mailbox(REP)
    google.oauth.set_access_token_lifetime(120)
    tokens = google.oauth.issue_grant(REP)
    stand_in.clock.advance(121)

    answer = requests.get(
        f"{urls.gmail_api_url}gmail/v1/users/me/profile",
        headers={"Authorization": f"Bearer {tokens.access_token}"},
        timeout=10,
    )

    assert tokens.expires_in == 120
    assert answer.status_code == 401
    assert answer.json()["error"]["errors"][0]["reason"] == "authError"


def test_revoked_grant_surfaces_as_refresh_error_on_the_next_call(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.add_mailbox(REP)
    gmail = gmail_service(urls, user_credentials(urls, google.oauth.issue_grant(REP)))
    google.oauth.revoke_grant(REP)

    with pytest.raises(auth_exceptions.RefreshError) as raised:
        gmail.users().getProfile(userId="me").execute()

    assert raised.value.args == (
        "invalid_grant: Token has been expired or revoked.",
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    )


def test_revoke_endpoint_revokes_the_whole_grant(google: GoogleStandIn, urls: GoogleUrls) -> None:
    tokens = google.oauth.issue_grant(REP)

    revoked = requests.post(urls.revoke_uri, params={"token": tokens.access_token}, timeout=10)
    refresh = requests.post(
        urls.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        },
        timeout=10,
    )

    assert revoked.status_code == 200
    assert google.oauth.authenticate(tokens.access_token) is None
    assert (refresh.status_code, refresh.json()["error"]) == (400, "invalid_grant")


def test_wrong_client_secret_is_refused_as_invalid_client(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    tokens = google.oauth.issue_grant(REP)

    answer = requests.post(
        urls.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": "not-the-secret",
        },
        timeout=10,
    )

    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid_client", "error_description": "Unauthorized"}


def test_userinfo_names_the_tokens_user(google: GoogleStandIn, urls: GoogleUrls) -> None:
    tokens = google.oauth.issue_grant(REP)

    answer = httpx.get(
        urls.userinfo_url, headers={"Authorization": f"Bearer {tokens.access_token}"}
    )

    assert answer.json()["email"] == REP
    assert answer.json()["verified_email"] is True


def test_unknown_access_token_is_answered_401_in_gmails_shape(urls: GoogleUrls) -> None:
    answer = httpx.get(
        f"{urls.gmail_api_url}gmail/v1/users/me/profile",
        headers={"Authorization": "Bearer ya29.not-issued"},
    )

    assert answer.status_code == 401
    assert answer.json() == {
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project.",
            "errors": [
                {
                    "message": "Invalid Credentials",
                    "domain": "global",
                    "reason": "authError",
                    "location": "Authorization",
                    "locationType": "header",
                }
            ],
            "status": "UNAUTHENTICATED",
        }
    }


def test_missing_credentials_are_answered_401_login_required(urls: GoogleUrls) -> None:
    answer = httpx.get(f"{urls.gmail_api_url}gmail/v1/users/me/profile")

    error = answer.json()["error"]
    assert (answer.status_code, error["errors"][0]["reason"]) == (401, "required")
    assert error["details"][0]["reason"] == "CREDENTIALS_MISSING"


def test_account_without_a_mailbox_is_answered_mail_service_not_enabled(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    gmail = gmail_service(urls, user_credentials(urls, google.oauth.issue_grant(OUTSIDER)))

    with pytest.raises(HttpError) as raised:
        gmail.users().getProfile(userId="me").execute()

    assert (raised.value.status_code, raised.value.reason) == (400, "Mail service not enabled")


def test_a_token_opens_only_its_own_mailbox(google: GoogleStandIn, rep_gmail: Any) -> None:
    google.add_mailbox(DANA)

    with pytest.raises(HttpError) as raised:
        rep_gmail.users().getProfile(userId=DANA).execute()

    assert raised.value.status_code == 403
    assert raised.value.reason == f"Delegation denied for {REP}"


def test_send_only_token_cannot_read_the_mailbox(google: GoogleStandIn, urls: GoogleUrls) -> None:
    google.add_mailbox(REP)
    tokens = google.oauth.issue_grant(REP, scopes=[SCOPE_GMAIL_SEND])
    gmail = gmail_service(urls, user_credentials(urls, tokens))

    with pytest.raises(HttpError) as raised:
        gmail.users().messages().list(userId="me").execute()

    assert raised.value.status_code == 403
    assert _error_body(raised.value)["error"]["errors"] == [
        {
            "message": "Insufficient Permission",
            "domain": "global",
            "reason": "insufficientPermissions",
        }
    ]


def test_metadata_scope_refuses_format_full(google: GoogleStandIn, urls: GoogleUrls) -> None:
    google.add_mailbox(REP)
    message_id = google.gmail.deliver(REP, make_email(sender=DANA, to=REP))
    tokens = google.oauth.issue_grant(REP, scopes=[SCOPE_GMAIL_METADATA])
    gmail = gmail_service(urls, user_credentials(urls, tokens))

    with pytest.raises(HttpError) as raised:
        gmail.users().messages().get(userId="me", id=message_id).execute()

    assert (raised.value.status_code, raised.value.reason) == (
        403,
        "Metadata scope doesn't allow format FULL",
    )


# -- Gmail: sending ----------------------------------------------------------------------


def test_sent_message_is_found_by_rfc822msgid_and_reaches_a_local_mailbox(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    gmail = rep_gmail
    google.add_mailbox(DANA)
    raw = make_email(sender=REP, to=DANA, message_id="<card-17.step-2@salesbot.example>")

    sent = gmail.users().messages().send(userId="me", body={"raw": encode_raw(raw)}).execute()
    found = (
        gmail.users()
        .messages()
        .list(userId="me", q="rfc822msgid:<card-17.step-2@salesbot.example>")
        .execute()
    )

    assert sent["labelIds"] == ["SENT"]
    assert found == {
        "messages": [{"id": sent["id"], "threadId": sent["threadId"]}],
        "resultSizeEstimate": 1,
    }
    assert [s.message["Message-ID"] for s in google.gmail.sent(REP)] == [
        "<card-17.step-2@salesbot.example>"
    ]
    delivered = google.gmail.messages(DANA)
    assert [(m.label_ids, m.message_id_header) for m in delivered] == [
        (("INBOX", "UNREAD"), "card-17.step-2@salesbot.example")
    ]


def test_gmail_adds_message_id_and_sends_from_the_account(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    raw = make_email(sender="Maria <someone-else@example.com>", to=OUTSIDER)

    rep_gmail.users().messages().send(userId="me", body={"raw": encode_raw(raw)}).execute()

    sent = google.gmail.sent(REP)[0].message
    assert sent["From"] == f"Maria <{REP}>"
    assert sent["Message-ID"].endswith("@mail.gmail.com>")


def test_bcc_stays_in_the_sent_copy_and_not_in_the_delivered_one(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    google.add_mailbox(DANA)
    raw = make_email(sender=REP, to=OUTSIDER, bcc=DANA)

    rep_gmail.users().messages().send(userId="me", body={"raw": encode_raw(raw)}).execute()

    assert google.gmail.sent(REP)[0].message["Bcc"] == DANA
    assert google.gmail.messages(DANA)[0].parsed()["Bcc"] is None


def test_send_in_a_thread_stays_in_it_and_an_unknown_thread_is_not_found(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    gmail = rep_gmail.users().messages()
    first = gmail.send(
        userId="me", body={"raw": encode_raw(make_email(sender=REP, to=OUTSIDER))}
    ).execute()

    second = gmail.send(
        userId="me",
        body={"raw": encode_raw(make_email(sender=REP, to=OUTSIDER)), "threadId": first["id"]},
    ).execute()
    with pytest.raises(HttpError) as raised:
        gmail.send(
            userId="me",
            body={"raw": encode_raw(make_email(sender=REP, to=OUTSIDER)), "threadId": "abc123"},
        ).execute()

    assert second["threadId"] == first["threadId"]
    assert raised.value.status_code == 404


def test_send_without_recipients_is_refused(rep_gmail: Any) -> None:
    raw = b"From: rep@appraisalfirm.example\r\nSubject: nobody\r\n\r\nhello\r\n"

    with pytest.raises(HttpError) as raised:
        rep_gmail.users().messages().send(userId="me", body={"raw": encode_raw(raw)}).execute()

    assert (raised.value.status_code, raised.value.reason) == (400, "Recipient address required")


def test_media_upload_built_by_googleapiclient_is_accepted_when_replayed_over_http(
    google: GoogleStandIn, urls: GoogleUrls, rep_gmail: Any
) -> None:
    raw = make_email(sender=REP, to=OUTSIDER, message_id="<upload-1@salesbot.example>")
    request = (
        rep_gmail.users()
        .messages()
        .send(
            userId="me",
            body={},
            media_body=MediaIoBaseUpload(io.BytesIO(raw), mimetype="message/rfc822"),
        )
    )
    token = google.oauth.issued_access_tokens(REP)[0].token

    # googleapiclient keeps the discovery document's https scheme for uploads.
    assert request.uri.startswith("https://127.0.0.1:")
    answer = httpx.post(
        request.uri.replace("https://", "http://", 1),
        content=request.body,
        headers={**request.headers, "authorization": f"Bearer {token}"},
    )

    assert answer.status_code == 200
    assert [(s.via, s.raw) for s in google.gmail.sent(REP)] == [("multipart", raw)]


def test_concurrent_sends_from_many_threads_each_send_one_message(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.add_mailbox(REP)
    tokens = google.oauth.issue_grant(REP)

    def send(n: int) -> str:
        # httplib2 connections are not thread-safe: one client per thread, as in Salesbot.
        gmail = gmail_service(urls, user_credentials(urls, tokens))
        raw = make_email(sender=REP, to=OUTSIDER, message_id=f"<card-{n}@salesbot.example>")
        return str(
            gmail.users()
            .messages()
            .send(userId="me", body={"raw": encode_raw(raw)})
            .execute()["id"]
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(send, range(24)))

    assert len(set(ids)) == 24
    assert sorted(s.message["Message-ID"] for s in google.gmail.sent(REP)) == sorted(
        f"<card-{n}@salesbot.example>" for n in range(24)
    )


# -- Gmail: reading ------------------------------------------------------------------------


def test_get_full_returns_the_mime_tree_and_attachments_by_id(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    gmail = rep_gmail.users().messages()
    raw = make_email(
        sender=DANA,
        to=REP,
        body="Send me the report.",
        html="<p>Send me the report.</p>",
        attachments=[("order.pdf", "application/pdf", b"%PDF-1.4 order")],
    )
    message_id = google.gmail.deliver(REP, raw)

    message = gmail.get(userId="me", id=message_id, format="full").execute()
    payload = message["payload"]
    attachment_part = payload["parts"][1]
    attachment = (
        gmail.attachments()
        .get(userId="me", messageId=message_id, id=attachment_part["body"]["attachmentId"])
        .execute()
    )

    assert (payload["partId"], payload["mimeType"], payload["body"]) == (
        "",
        "multipart/mixed",
        {"size": 0},
    )
    alternative = payload["parts"][0]
    assert [(p["partId"], p["mimeType"]) for p in alternative["parts"]] == [
        ("0.0", "text/plain"),
        ("0.1", "text/html"),
    ]
    assert decode_raw(alternative["parts"][0]["body"]["data"]) == b"Send me the report.\n"
    assert (attachment_part["partId"], attachment_part["filename"]) == ("1", "order.pdf")
    assert attachment_part["body"]["size"] == len(b"%PDF-1.4 order")
    assert decode_raw(attachment["data"]) == b"%PDF-1.4 order"
    assert message["snippet"] == "Send me the report."
    assert message["labelIds"] == ["INBOX", "UNREAD"]


def test_a_bounce_shows_its_report_parts_and_the_returned_message(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    original = make_email(sender=REP, to=OUTSIDER, message_id="<card-3@salesbot.example>")
    bounce = (
        b"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n"
        b"To: " + REP.encode() + b"\r\n"
        b"Subject: Delivery Status Notification (Failure)\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nAddress not found.\r\n"
        b"--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; googlemail.com\r\n\r\n"
        b"Final-Recipient: rfc822; lo@otherlender.example\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\n\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--b1--\r\n"
    )
    bounce_id = google.gmail.deliver(REP, bounce)
    messages = rep_gmail.users().messages()

    payload = messages.get(userId="me", id=bounce_id).execute()["payload"]
    returned = payload["parts"][2]
    attachment = (
        messages.attachments()
        .get(userId="me", messageId=bounce_id, id=returned["body"]["attachmentId"])
        .execute()
    )

    assert [(p["partId"], p["mimeType"]) for p in payload["parts"]] == [
        ("0", "text/plain"),
        ("1", "message/delivery-status"),
        ("2", "message/rfc822"),
    ]
    assert b"Status: 5.1.1" in decode_raw(payload["parts"][1]["body"]["data"])
    inner = returned["parts"][0]
    assert inner["partId"] == "2.0"
    assert {"name": "Message-ID", "value": "<card-3@salesbot.example>"} in inner["headers"]
    returned_message = BytesParser(policy=policy.default).parsebytes(decode_raw(attachment["data"]))
    assert returned_message["Message-ID"] == "<card-3@salesbot.example>"


def test_get_raw_returns_the_delivered_bytes(google: GoogleStandIn, rep_gmail: Any) -> None:
    raw = make_email(sender=DANA, to=REP, subject="Re: turn times")
    message_id = google.gmail.deliver(REP, raw)

    message = rep_gmail.users().messages().get(userId="me", id=message_id, format="raw").execute()

    assert decode_raw(message["raw"]) == raw
    assert message["sizeEstimate"] == len(raw)


def test_get_metadata_returns_only_the_asked_headers(google: GoogleStandIn, rep_gmail: Any) -> None:
    message_id = google.gmail.deliver(REP, make_email(sender=DANA, to=REP, subject="Pricing"))

    message = (
        rep_gmail.users()
        .messages()
        .get(userId="me", id=message_id, format="metadata", metadataHeaders=["subject", "From"])
        .execute()
    )

    assert message["payload"] == {
        "mimeType": "text/plain",
        "headers": [{"name": "From", "value": DANA}, {"name": "Subject", "value": "Pricing"}],
    }


def test_unknown_message_is_not_found_in_gmails_shape(rep_gmail: Any) -> None:
    with pytest.raises(HttpError) as raised:
        rep_gmail.users().messages().get(userId="me", id="19a0ffffffffffff").execute()

    assert _error_body(raised.value) == {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "errors": [
                {
                    "message": "Requested entity was not found.",
                    "domain": "global",
                    "reason": "notFound",
                }
            ],
            "status": "NOT_FOUND",
        }
    }


def test_reply_with_in_reply_to_joins_the_thread_of_the_sent_message(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    gmail = rep_gmail.users()
    outreach = make_email(sender=REP, to=OUTSIDER, message_id="<outreach-1@salesbot.example>")
    sent = gmail.messages().send(userId="me", body={"raw": encode_raw(outreach)}).execute()
    reply = make_email(
        sender=OUTSIDER,
        to=REP,
        subject="Re: Turn times in Travis County",
        message_id="<reply-1@otherlender.example>",
        in_reply_to="<outreach-1@salesbot.example>",
        references=["<outreach-1@salesbot.example>"],
    )
    reply_id = google.gmail.deliver(REP, reply)
    unrelated_id = google.gmail.deliver(REP, make_email(sender=DANA, to=REP))

    thread = gmail.threads().get(userId="me", id=sent["threadId"], format="minimal").execute()

    assert [m["id"] for m in thread["messages"]] == [sent["id"], reply_id]
    assert google.gmail.message(REP, unrelated_id).thread_id == unrelated_id
    assert thread["historyId"] == thread["messages"][1]["historyId"]


def test_list_filters_by_query_labels_and_pages(google: GoogleStandIn, rep_gmail: Any) -> None:
    now = datetime.now(UTC)
    old = google.gmail.deliver(
        REP, make_email(sender=DANA, to=REP), internal_date=now - timedelta(days=10)
    )
    recent = [
        google.gmail.deliver(
            REP, make_email(sender=OUTSIDER, to=REP), internal_date=now - timedelta(hours=h)
        )
        for h in (3, 2, 1)
    ]
    archived = google.gmail.deliver(REP, make_email(sender=OUTSIDER, to=REP), labels=())
    messages = rep_gmail.users().messages()

    def ids(**params: object) -> list[str]:
        return [m["id"] for m in messages.list(userId="me", **params).execute().get("messages", [])]

    after = int((now - timedelta(days=1)).timestamp())
    first_page = messages.list(userId="me", q="in:inbox", maxResults=2).execute()
    second_page = messages.list(
        userId="me", q="in:inbox", maxResults=2, pageToken=first_page["nextPageToken"]
    ).execute()

    assert ids(q=f"after:{after}") == [archived, *reversed(recent)]
    assert ids(q="newer_than:2d in:inbox") == list(reversed(recent))
    assert ids(q=f"from:{DANA}") == [old]
    assert ids(q=f"from:{DANA} OR -in:inbox") == [archived, old]
    assert ids(labelIds=["INBOX", "UNREAD"], q="older_than:5d") == [old]
    assert [m["id"] for m in first_page["messages"]] == [recent[2], recent[1]]
    assert [m["id"] for m in second_page["messages"]] == [recent[0], old]
    assert (first_page["resultSizeEstimate"], "nextPageToken" in second_page) == (4, False)


def test_unsupported_search_operator_is_refused_rather_than_ignored(rep_gmail: Any) -> None:
    with pytest.raises(HttpError) as raised:
        rep_gmail.users().messages().list(userId="me", q="larger:5M").execute()

    assert raised.value.status_code == 400


def test_profile_counts_messages_and_threads(google: GoogleStandIn, rep_gmail: Any) -> None:
    first = google.gmail.deliver(REP, make_email(sender=DANA, to=REP, message_id="<a@x>"))
    google.gmail.deliver(REP, make_email(sender=DANA, to=REP, in_reply_to="<a@x>"))
    google.gmail.deliver(REP, make_email(sender=OUTSIDER, to=REP))

    profile = rep_gmail.users().getProfile(userId=REP).execute()

    assert (profile["messagesTotal"], profile["threadsTotal"]) == (3, 2)
    assert google.gmail.messages(REP)[1].thread_id == first


# -- Gmail: history and watch ---------------------------------------------------------------


def test_history_list_pages_through_delivered_messages(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    start = google.gmail.history_id(REP)
    delivered = [google.gmail.deliver(REP, make_email(sender=DANA, to=REP)) for _ in range(5)]
    history = rep_gmail.users().history()

    pages = []
    request = history.list(userId="me", startHistoryId=str(start), maxResults=2)
    while request is not None:
        page = request.execute()
        pages.append(page)
        request = history.list_next(request, page)

    added = [r["messagesAdded"][0]["message"] for p in pages for r in p["history"]]
    assert [len(p["history"]) for p in pages] == [2, 2, 1]
    assert [m["id"] for m in added] == delivered
    assert {tuple(m["labelIds"]) for m in added} == {("INBOX", "UNREAD")}
    assert {p["historyId"] for p in pages} == {str(google.gmail.history_id(REP))}


def test_history_filters_by_type_and_label(google: GoogleStandIn, rep_gmail: Any) -> None:
    start = google.gmail.history_id(REP)
    inbound = google.gmail.deliver(REP, make_email(sender=DANA, to=REP))
    google.gmail.deliver(REP, make_email(sender=REP, to=DANA), labels=("SENT",))
    google.gmail.modify_labels(REP, inbound, remove=["UNREAD"], add=["STARRED"])
    history = rep_gmail.users().history()

    inbox_added = history.list(
        userId="me", startHistoryId=str(start), historyTypes=["messageAdded"], labelId="INBOX"
    ).execute()
    label_changes = history.list(
        userId="me", startHistoryId=str(start), historyTypes=["labelAdded", "labelRemoved"]
    ).execute()

    assert [r["messagesAdded"][0]["message"]["id"] for r in inbox_added["history"]] == [inbound]
    changes = []
    for record in label_changes["history"]:
        kind = "labelsAdded" if "labelsAdded" in record else "labelsRemoved"
        changes.append((kind, record[kind][0]["labelIds"]))
    assert changes == [("labelsAdded", ["STARRED"]), ("labelsRemoved", ["UNREAD"])]


def test_history_older_than_what_gmail_keeps_is_not_found(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    start = google.gmail.history_id(REP)
    google.gmail.deliver(REP, make_email(sender=DANA, to=REP))
    google.gmail.expire_history(REP, google.gmail.history_id(REP))

    with pytest.raises(HttpError) as raised:
        rep_gmail.users().history().list(userId="me", startHistoryId=str(start)).execute()

    assert raised.value.status_code == 404
    assert _error_body(raised.value)["error"]["status"] == "NOT_FOUND"


def test_history_limit_forgets_old_records_by_itself(google: GoogleStandIn, rep_gmail: Any) -> None:
    google.gmail.set_history_limit(3)
    start = google.gmail.history_id(REP)
    for _ in range(3):
        google.gmail.deliver(REP, make_email(sender=DANA, to=REP))
    kept_from = google.gmail.history(REP)[0].id
    google.gmail.deliver(REP, make_email(sender=DANA, to=REP))
    history = rep_gmail.users().history()

    with pytest.raises(HttpError) as raised:
        history.list(userId="me", startHistoryId=str(start)).execute()
    recent = history.list(userId="me", startHistoryId=str(kept_from)).execute()

    assert raised.value.status_code == 404
    assert len(recent["history"]) == 3


def test_watch_answers_history_id_and_seven_day_expiration_and_stop_ends_it(
    stand_in: GoogleServer, rep_gmail: Any
) -> None:
    google = stand_in.google
    users = rep_gmail.users()
    topic = "projects/salesbot-sandbox/topics/gmail"

    watch = users.watch(
        userId="me",
        body={"topicName": topic, "labelIds": ["INBOX"], "labelFilterBehavior": "include"},
    ).execute()
    users.stop(userId="me").execute()

    expected_expiration = int((stand_in.clock() + 7 * 86_400) * 1000)
    assert watch == {
        "historyId": str(google.gmail.history_id(REP)),
        "expiration": str(expected_expiration),
    }
    assert [
        (w.email, w.topic_name, w.label_ids, w.label_filter_behavior)
        for w in google.gmail.watch_calls
    ] == [(REP, topic, ("INBOX",), "include")]
    assert google.gmail.stop_calls == [REP]
    assert google.gmail.watch_of(REP) is None


def test_watch_without_a_topic_is_refused(rep_gmail: Any) -> None:
    with pytest.raises(HttpError) as raised:
        rep_gmail.users().watch(userId="me", body={"labelIds": ["INBOX"]}).execute()

    assert raised.value.status_code == 400


# -- Gmail: failures ------------------------------------------------------------------------


def test_injected_429_with_retry_after_surfaces_as_http_error_once(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    google.gmail.fail_next("messages.send", 429, "rateLimitExceeded", retry_after=30)
    send = rep_gmail.users().messages().send
    body = {"raw": encode_raw(make_email(sender=REP, to=OUTSIDER))}

    with pytest.raises(HttpError) as raised:
        send(userId="me", body=body).execute()
    retried = send(userId="me", body=body).execute()

    error = _error_body(raised.value)["error"]
    assert raised.value.status_code == 429
    assert raised.value.resp["retry-after"] == "30"
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["errors"][0]["reason"] == "rateLimitExceeded"
    assert error["message"].startswith("User-rate limit exceeded.  Retry after ")
    assert [s.id for s in google.gmail.sent(REP)] == [retried["id"]]


@pytest.mark.parametrize(
    ("status", "reason", "domain", "status_name"),
    [
        (403, "userRateLimitExceeded", "usageLimits", "PERMISSION_DENIED"),
        (403, "dailyLimitExceeded", "usageLimits", "PERMISSION_DENIED"),
        (500, "backendError", "global", "INTERNAL"),
    ],
)
def test_injected_errors_have_gmails_shape(
    google: GoogleStandIn,
    rep_gmail: Any,
    status: int,
    reason: str,
    domain: str,
    status_name: str,
) -> None:
    google.gmail.fail_next("history.list", status, reason)

    with pytest.raises(HttpError) as raised:
        rep_gmail.users().history().list(userId="me", startHistoryId="1000000").execute()

    error = _error_body(raised.value)["error"]
    assert raised.value.status_code == status
    assert (error["errors"][0]["reason"], error["errors"][0]["domain"]) == (reason, domain)
    assert error["status"] == status_name


def test_dropped_answer_after_send_leaves_exactly_one_sent_message(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    google.gmail.accept_but_drop_connection_next_send()
    messages = rep_gmail.users().messages()
    raw = make_email(sender=REP, to=OUTSIDER, message_id="<card-9@salesbot.example>")

    with pytest.raises(http.client.IncompleteRead):
        messages.send(userId="me", body={"raw": encode_raw(raw)}).execute()
    found = messages.list(userId="me", q="rfc822msgid:card-9@salesbot.example").execute()

    assert found["resultSizeEstimate"] == 1
    assert len(google.gmail.sent(REP)) == 1
    assert [c.status for c in google.gmail.calls] == [None, 200]


def test_backend_error_after_send_leaves_exactly_one_sent_message(
    google: GoogleStandIn, rep_gmail: Any
) -> None:
    google.gmail.accept_but_drop_connection_next_send(response="error_500")
    raw = make_email(sender=REP, to=OUTSIDER)

    with pytest.raises(HttpError) as raised:
        rep_gmail.users().messages().send(userId="me", body={"raw": encode_raw(raw)}).execute()

    assert raised.value.status_code == 500
    assert len(google.gmail.sent(REP)) == 1


def test_fail_next_refuses_an_unknown_route(google: GoogleStandIn) -> None:
    with pytest.raises(ValueError, match="unknown route 'messages.modify'"):
        google.gmail.fail_next("messages.modify", 500, "backendError")


# -- the discovery document ------------------------------------------------------------------


def test_served_routes_and_scopes_match_the_discovery_document() -> None:
    users = json.loads(DISCOVERY.read_text())["resources"]["users"]
    methods = {
        "getProfile": users["methods"]["getProfile"],
        "watch": users["methods"]["watch"],
        "stop": users["methods"]["stop"],
        "history.list": users["resources"]["history"]["methods"]["list"],
        "threads.get": users["resources"]["threads"]["methods"]["get"],
        "messages.send": users["resources"]["messages"]["methods"]["send"],
        "messages.get": users["resources"]["messages"]["methods"]["get"],
        "messages.list": users["resources"]["messages"]["methods"]["list"],
        "messages.attachments.get": users["resources"]["messages"]["resources"]["attachments"][
            "methods"
        ]["get"],
    }

    assert {name: (m["httpMethod"], m["path"]) for name, m in methods.items()} == dict(ROUTE_PATHS)
    assert {name: frozenset(m["scopes"]) for name, m in methods.items()} == dict(METHOD_SCOPES)
    assert (
        methods["messages.send"]["mediaUpload"]["protocols"]["simple"]["path"]
        == "/upload/gmail/v1/users/{userId}/messages/send"
    )


# -- Pub/Sub push tokens ------------------------------------------------------------------------


def _verify(token: str, urls: GoogleUrls, audience: str = AUDIENCE) -> dict[str, Any]:
    return dict(
        id_token.verify_token(
            token,
            AuthRequest(),
            audience=audience,
            certs_url=urls.certs_url,
        )
    )


def test_verify_token_accepts_a_push_token_signed_by_the_stand_in(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    claims = _verify(google.signer.sign(AUDIENCE), urls)

    assert (claims["iss"], claims["aud"], claims["email"], claims["email_verified"]) == (
        "https://accounts.google.com",
        AUDIENCE,
        "gmail-push@salesbot-sandbox.iam.gserviceaccount.com",
        True,
    )


def test_verify_token_rejects_a_token_signed_by_another_key(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    forger = PubSubOidcSigner()

    with pytest.raises(auth_exceptions.MalformedError, match="Certificate for key id"):
        _verify(forger.sign(AUDIENCE), urls)
    with pytest.raises(auth_exceptions.MalformedError, match="Could not verify token signature"):
        _verify(forger.sign(AUDIENCE, kid=google.signer.kid), urls)


def test_verify_token_rejects_an_expired_token(google: GoogleStandIn, urls: GoogleUrls) -> None:
    issued = datetime.now(UTC) - timedelta(hours=2)

    with pytest.raises(auth_exceptions.InvalidValue, match="Token expired"):
        _verify(google.signer.sign(AUDIENCE, issued_at=issued), urls)


def test_verify_token_rejects_a_wrong_audience(google: GoogleStandIn, urls: GoogleUrls) -> None:
    with pytest.raises(auth_exceptions.InvalidValue, match="Token has wrong audience"):
        _verify(google.signer.sign("https://elsewhere.example/push"), urls)


def test_tokens_of_a_rotated_key_still_verify_while_it_is_published(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    old_token = google.signer.sign(AUDIENCE)
    google.signer.rotate_key()

    assert _verify(old_token, urls)["aud"] == AUDIENCE
    assert _verify(google.signer.sign(AUDIENCE), urls)["aud"] == AUDIENCE
    assert len(google.signer.certs()) == 2


def test_push_body_is_shaped_like_a_pubsub_push() -> None:
    published = datetime(2026, 11, 25, 15, 0, 1, 250_000, tzinfo=UTC)

    body = push_body(REP, 1_000_042, message_id="42", publish_time=published)

    assert body == {
        "message": {
            "attributes": {},
            "data": base64.b64encode(
                json.dumps({"emailAddress": REP, "historyId": 1_000_042}).encode()
            ).decode(),
            "messageId": "42",
            "message_id": "42",
            "publishTime": "2026-11-25T15:00:01.250Z",
            "publish_time": "2026-11-25T15:00:01.250Z",
        },
        "subscription": "projects/salesbot-sandbox/subscriptions/gmail-push",
    }


def test_push_request_carries_the_mailboxs_history_id_and_a_verifiable_token(
    google: GoogleStandIn, urls: GoogleUrls
) -> None:
    google.add_mailbox(REP)
    google.gmail.deliver(REP, make_email(sender=DANA, to=REP))

    headers, body = google.push_request(REP, audience=AUDIENCE)

    data = json.loads(base64.b64decode(body["message"]["data"]))
    assert data == {"emailAddress": REP, "historyId": google.gmail.history_id(REP)}
    assert _verify(headers["Authorization"].removeprefix("Bearer "), urls)["aud"] == AUDIENCE


def test_sent_raw_parses_with_the_stdlib(google: GoogleStandIn, rep_gmail: Any) -> None:
    raw = make_email(sender=REP, to=OUTSIDER, subject="Café hours")

    rep_gmail.users().messages().send(userId="me", body={"raw": encode_raw(raw)}).execute()

    parsed = BytesParser(policy=policy.default).parsebytes(google.gmail.sent(REP)[0].raw)
    assert parsed["Subject"] == "Café hours"
