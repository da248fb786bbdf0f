"""Parsing inbound email from small hand-made MIME, and stripping replies to their new text."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.email_message import EmailFlag, ParsedEmail
from integrations.gmail.mime import (
    DEFAULT_MAX_BODY_CHARS,
    decode_base64url,
    parse_gmail_message,
    parse_raw,
)
from integrations.gmail.reply_text import html_to_text, strip_reply


def mime(*lines: str, body: str = "") -> bytes:
    """Build a message from header lines and a body, with CRLF line ends as on the wire."""
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode("latin-1")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# --- bodies and charsets ---------------------------------------------------------------------


def test_quoted_printable_utf8_body_is_decoded() -> None:
    raw = mime(
        "From: Dana Whitfield <dana@pinnaclelending.com>",
        "Subject: Re: turn times",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        body="Caf=C3=A9 at 10? Let=E2=80=99s talk =\nTuesday.\n",
    )

    parsed = parse_raw(raw)

    assert parsed.text == "Café at 10? Let’s talk Tuesday."
    assert parsed.flags == frozenset()


def test_base64_latin1_body_is_decoded() -> None:
    body = base64.encodebytes("Grüße aus Köln".encode("iso-8859-1")).decode()
    raw = mime(
        "From: a@example.com",
        "Content-Type: text/plain; charset=ISO-8859-1",
        "Content-Transfer-Encoding: base64",
        body=body,
    )

    assert parse_raw(raw).text == "Grüße aus Köln"


def test_rfc2047_headers_in_latin1_and_shift_jis_are_decoded() -> None:
    jp_subject = "=?shift_jis?B?" + base64.b64encode("見積もり".encode("shift_jis")).decode() + "?="
    raw = mime(
        "From: =?ISO-8859-1?Q?Fran=E7ois_M=FCller?= <francois@example.fr>",
        f"Subject: Re: {jp_subject}",
        "To: =?shift_jis?B?"
        + base64.b64encode("田中".encode("shift_jis")).decode()
        + "?= <t@example.jp>",
        "Content-Type: text/plain; charset=us-ascii",
        body="ok\n",
    )

    parsed = parse_raw(raw)

    assert parsed.from_name == "François Müller"
    assert parsed.from_email == "francois@example.fr"
    assert parsed.subject == "Re: 見積もり"
    assert parsed.to == ("t@example.jp",)


def test_unknown_charset_is_decoded_with_a_fallback_and_flagged() -> None:
    raw = (
        b"From: =?x-unknown?q?J=E9r=F4me?= <j@example.com>\r\n"
        b"Subject: =?x-unknown?q?R=E9ponse?=\r\n"
        b"Content-Type: text/plain; charset=x-unknown\r\n\r\n"
        b"J\xc3\xa9r\xc3\xb4me says yes\r\n"
    )

    parsed = parse_raw(raw)

    assert parsed.text == "Jérôme says yes"
    assert parsed.subject == "Réponse"
    assert parsed.from_name == "Jérôme"
    assert EmailFlag.UNKNOWN_CHARSET in parsed.flags
    assert any("x-unknown" in note for note in parsed.defects)


def test_bytes_invalid_in_the_declared_charset_are_replaced_and_flagged() -> None:
    raw = b"From: a@b.co\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbad \xff\xfe end\r\n"

    parsed = parse_raw(raw)

    assert parsed.text == "bad \ufffd\ufffd end"
    assert EmailFlag.DECODE_ERROR in parsed.flags


def test_eight_bit_text_labelled_ascii_is_read_as_utf8_without_a_flag() -> None:
    raw = b"From: a@example.com\r\nContent-Type: text/plain\r\n\r\nna\xc3\xafve\r\n"

    parsed = parse_raw(raw)

    assert parsed.text == "naïve"
    assert parsed.flags == frozenset()


def test_nul_characters_never_reach_the_text() -> None:
    raw = b"From: a@example.com\r\nSubject: a\x00b\r\n\r\nnul\x00here\r\n"

    parsed = parse_raw(raw)

    assert parsed.text == "nulhere"
    assert parsed.subject == "ab"


# --- structure -----------------------------------------------------------------------------


def test_html_only_message_is_turned_into_text_and_flagged() -> None:
    raw = mime(
        "From: a@example.com",
        "Content-Type: text/html; charset=utf-8",
        body="<html><body><p>Tuesday <b>works</b>.</p><p>Dana</p><script>x()</script></body>",
    )

    parsed = parse_raw(raw)

    assert parsed.text == "Tuesday works.\n\nDana"
    assert parsed.html is not None
    assert "<b>works</b>" in parsed.html
    assert EmailFlag.HTML_ONLY in parsed.flags


def test_multipart_alternative_takes_the_plain_text_and_keeps_the_html() -> None:
    raw = mime(
        "From: a@example.com",
        'Content-Type: multipart/alternative; boundary="b1"',
        body=(
            "--b1\nContent-Type: text/plain; charset=utf-8\n\nPlain version\n"
            "--b1\nContent-Type: text/html; charset=utf-8\n\n<p>HTML version</p>\n--b1--\n"
        ),
    )

    parsed = parse_raw(raw)

    assert parsed.text == "Plain version"
    assert parsed.html == "<p>HTML version</p>"
    assert parsed.flags == frozenset()


def test_attachments_are_recorded_by_name_type_and_size_only() -> None:
    pdf = bytes(range(256)) * 40
    raw = mime(
        "From: a@example.com",
        'Content-Type: multipart/mixed; boundary="m"',
        body=(
            "--m\nContent-Type: text/plain\n\nSee attached.\n"
            '--m\nContent-Type: application/pdf; name="order.pdf"\n'
            "Content-Disposition: attachment; filename*=utf-8''Bestellung%20%C3%BC.pdf\n"
            "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(pdf).decode() + "--m--\n"
        ),
    )

    parsed = parse_raw(raw)

    assert parsed.text == "See attached."
    assert [(a.filename, a.content_type, a.size) for a in parsed.attachments] == [
        ("Bestellung ü.pdf", "application/pdf", len(pdf))
    ]
    assert EmailFlag.HAS_ATTACHMENTS in parsed.flags


def test_nested_message_gives_the_original_headers() -> None:
    raw = mime(
        "From: MAILER-DAEMON@mx.example.net",
        "Subject: Undelivered Mail Returned to Sender",
        "Auto-Submitted: auto-replied",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
        body=(
            "--r\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
            "--r\nContent-Type: message/delivery-status\n\n"
            "Reporting-MTA: dns; mx.example.net\n\n"
            "Final-Recipient: rfc822; dana@pinnaclelending.com\nAction: failed\n"
            "Status: 5.1.1 (user unknown)\n"
            "Diagnostic-Code: smtp; 550 5.1.1 <dana@pinnaclelending.com>:\n"
            "    Recipient address rejected\n\n"
            "--r\nContent-Type: message/rfc822\n\n"
            "Message-ID: <send-42@salesbot.example>\nTo: dana@pinnaclelending.com\n"
            "Subject: Turn times\n\nHi Dana\n--r--\n"
        ),
    )

    parsed = parse_raw(raw)

    assert parsed.original_message_ids == ("<send-42@salesbot.example>",)
    assert parsed.embedded_messages[0].to == ("dana@pinnaclelending.com",)
    assert parsed.embedded_messages[0].subject == "Turn times"
    assert parsed.delivery_status[0].status == "5.1.1"
    assert parsed.delivery_status[0].address == "dana@pinnaclelending.com"
    assert parsed.headers["Status"] == "5.1.1 (user unknown)"
    assert parsed.headers["Reporting-MTA"] == "dns; mx.example.net"
    assert parsed.headers["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 <dana@pinnaclelending.com>:    Recipient address rejected"
    )
    assert parsed.headers["Auto-Submitted"] == "auto-replied"
    assert parsed.text == "Your message could not be delivered."
    assert EmailFlag.NESTED_MESSAGE in parsed.flags


def test_a_malformed_boundary_is_read_as_far_as_possible_and_flagged() -> None:
    raw = mime(
        "From: a@example.com",
        "Subject: broken",
        'Content-Type: multipart/mixed; boundary="right"',
        body="--wrong\nContent-Type: text/plain\n\nThe reply text survives.\n--wrong--\n",
    )

    parsed = parse_raw(raw)

    assert "The reply text survives." in parsed.text
    assert parsed.subject == "broken"
    assert EmailFlag.MALFORMED_MIME in parsed.flags
    assert "StartBoundaryNotFoundDefect in message" in parsed.defects


def test_a_20_mb_body_is_truncated_and_flagged() -> None:
    body = ("All work and no play makes Jack a dull boy.\n" * 480_000)[: 20 * 1024 * 1024]
    raw = mime(
        "From: a@example.com",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        body=base64.encodebytes(body.encode()).decode(),
    )

    parsed = parse_raw(raw)

    assert len(parsed.text) == DEFAULT_MAX_BODY_CHARS
    assert parsed.text.startswith("All work and no play")
    assert EmailFlag.TRUNCATED in parsed.flags
    assert parsed.size == len(raw)


def test_the_body_limit_can_be_set() -> None:
    raw = mime("From: a@example.com", body="x" * 5000)

    parsed = parse_raw(raw, max_body_chars=100)

    assert parsed.text == "x" * 100
    assert EmailFlag.TRUNCATED in parsed.flags


def test_garbage_never_raises() -> None:
    for raw in (b"", b"\x00\xff" * 100, b"Content-Type: multipart/mixed\r\n\r\n--", b"::\r\n\r\n"):
        parsed = parse_raw(raw)
        assert isinstance(parsed, ParsedEmail)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_parse_raw_never_raises_on_random_bytes(raw: bytes) -> None:
    assert parse_raw(raw).size == len(raw)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "From: a@b.c\r\n",
                "Content-Type: multipart/mixed; boundary=x\r\n",
                "\r\n",
                "--x\r\n",
                "--x--\r\n",
                "Content-Type: message/rfc822\r\n",
                "Content-Transfer-Encoding: base64\r\n",
                "Content-Type: text/plain; charset=x-nope\r\n",
                "=?utf-8?b?w6k=?=",
                "Subject: ",
                "hello\r\n",
                "Content-Type: message/delivery-status\r\n",
                "Status: 5.1.1\r\n",
            ]
        ),
        max_size=60,
    )
)
def test_parse_raw_never_raises_on_shuffled_mime_pieces(pieces: list[str]) -> None:
    assert isinstance(parse_raw("".join(pieces).encode()), ParsedEmail)


# --- headers ------------------------------------------------------------------------------


def test_threading_headers_dates_and_addresses_are_read() -> None:
    raw = mime(
        'From: "Whitfield, Dana" <Dana@PinnacleLending.com>',
        'To: rep@appraisals.example, "Ops" <ops@appraisals.example>',
        "Cc: undisclosed-recipients:;",
        "Reply-To: dana.w@pinnaclelending.com",
        "Date: Tue, 14 Nov 2023 17:05:00 -0500",
        "Message-ID: <reply-1@pinnaclelending.com>",
        "In-Reply-To: <send-42@salesbot.example>",
        "References: <send-41@salesbot.example>\r\n <send-42@salesbot.example>",
        "List-Unsubscribe: <mailto:unsub@example.com>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "X-Unrelated: dropped",
        body="Thanks\n",
    )

    parsed = parse_raw(raw)

    assert parsed.from_email == "Dana@PinnacleLending.com"
    assert parsed.from_name == "Whitfield, Dana"
    assert parsed.to == ("rep@appraisals.example", "ops@appraisals.example")
    assert parsed.cc == ()
    assert parsed.reply_to == "dana.w@pinnaclelending.com"
    assert parsed.date == datetime(2023, 11, 14, 22, 5, tzinfo=UTC)
    assert parsed.message_id == "<reply-1@pinnaclelending.com>"
    assert parsed.in_reply_to == "<send-42@salesbot.example>"
    assert parsed.references == ("<send-41@salesbot.example>", "<send-42@salesbot.example>")
    assert parsed.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "X-Unrelated" not in parsed.headers


def test_an_unreadable_date_is_none_and_flagged() -> None:
    parsed = parse_raw(mime("From: a@example.com", "Date: yesterday-ish", body="x"))

    assert parsed.date is None
    assert EmailFlag.MALFORMED_HEADER in parsed.flags


def test_a_date_without_zone_is_taken_as_utc() -> None:
    parsed = parse_raw(
        mime("From: a@example.com", "Date: Tue, 14 Nov 2023 10:00:00 -0000", body="x")
    )

    assert parsed.date == datetime(2023, 11, 14, 10, 0, tzinfo=UTC)


# --- Gmail resources ----------------------------------------------------------------------


def test_decode_base64url_accepts_missing_padding() -> None:
    assert decode_base64url(b64url(b"hello?>")) == b"hello?>"
    assert decode_base64url("aGk") == b"hi"


def gmail_full_resource() -> dict[str, Any]:
    return {
        "id": "18bd5c4a2f",
        "threadId": "18bd5c0000",
        "labelIds": ["INBOX", "UNREAD"],
        "internalDate": "1700000000000",
        "sizeEstimate": 48213,
        "payload": {
            "partId": "",
            "mimeType": "multipart/mixed",
            "filename": "",
            "headers": [
                {"name": "From", "value": "Dana Whitfield <dana@pinnaclelending.com>"},
                {"name": "To", "value": "rep@appraisals.example"},
                {"name": "Subject", "value": "Re: Turn times =?utf-8?q?=E2=80=93?= Travis"},
                {"name": "Message-ID", "value": "<reply-1@pinnaclelending.com>"},
                {"name": "In-Reply-To", "value": "<send-42@salesbot.example>"},
                {"name": "Date", "value": "Tue, 14 Nov 2023 17:05:00 -0500"},
                {"name": "Content-Type", "value": 'multipart/mixed; boundary="x"'},
            ],
            "body": {"size": 0},
            "parts": [
                {
                    "partId": "0",
                    "mimeType": "multipart/alternative",
                    "headers": [{"name": "Content-Type", "value": "multipart/alternative"}],
                    "body": {"size": 0},
                    "parts": [
                        {
                            "partId": "0.0",
                            "mimeType": "text/plain",
                            "headers": [
                                {"name": "Content-Type", "value": "text/plain; charset=UTF-8"}
                            ],
                            "body": {
                                "size": 60,
                                "data": b64url(
                                    b"Tuesday works.\n\nOn Mon, Nov 13, 2023 at 9:00 AM Rep "
                                    b"<rep@appraisals.example> wrote:\n> Would Tuesday work?\n"
                                ),
                            },
                        },
                        {
                            "partId": "0.1",
                            "mimeType": "text/html",
                            "headers": [
                                {"name": "Content-Type", "value": "text/html; charset=UTF-8"}
                            ],
                            "body": {
                                "size": 80,
                                "data": b64url(
                                    b'<div>Tuesday works.</div><div class="gmail_quote">'
                                    b"On Mon ... wrote:<blockquote>Would Tuesday work?"
                                    b"</blockquote></div>"
                                ),
                            },
                        },
                    ],
                },
                {
                    "partId": "1",
                    "mimeType": "application/pdf",
                    "filename": "engagement letter.pdf",
                    "headers": [
                        {
                            "name": "Content-Type",
                            "value": 'application/pdf; name="engagement letter.pdf"',
                        },
                        {"name": "Content-Disposition", "value": "attachment"},
                    ],
                    "body": {"attachmentId": "ANGjdJ8xyz", "size": 45120},
                },
            ],
        },
    }


def test_a_gmail_full_resource_is_parsed_without_fetching_attachments() -> None:
    parsed = parse_gmail_message(gmail_full_resource())

    assert parsed.gmail_id == "18bd5c4a2f"
    assert parsed.gmail_thread_id == "18bd5c0000"
    assert parsed.label_ids == ("INBOX", "UNREAD")
    assert parsed.internal_date == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert parsed.size == 48213
    assert parsed.subject == "Re: Turn times – Travis"
    assert parsed.from_email == "dana@pinnaclelending.com"
    assert parsed.in_reply_to == "<send-42@salesbot.example>"
    assert parsed.text.startswith("Tuesday works.")
    assert parsed.reply_text == "Tuesday works."
    assert parsed.attachments[0].model_dump() == {
        "filename": "engagement letter.pdf",
        "content_type": "application/pdf",
        "size": 45120,
        "gmail_attachment_id": "ANGjdJ8xyz",
    }
    assert parsed.flags == {EmailFlag.HAS_ATTACHMENTS}


def test_a_gmail_full_resource_with_a_forwarded_message_gives_its_headers() -> None:
    resource = {
        "id": "1",
        "payload": {
            "mimeType": "multipart/mixed",
            "headers": [{"name": "From", "value": "a@example.com"}],
            "parts": [
                {"mimeType": "text/plain", "body": {"data": b64url(b"FYI")}},
                {
                    "mimeType": "message/rfc822",
                    "body": {"size": 300},
                    "parts": [
                        {
                            "mimeType": "text/plain",
                            "headers": [
                                {"name": "Message-ID", "value": "<orig@salesbot.example>"},
                                {"name": "Subject", "value": "Turn times"},
                            ],
                            "body": {"data": b64url(b"old")},
                        }
                    ],
                },
            ],
        },
    }

    parsed = parse_gmail_message(resource)

    assert parsed.text == "FYI"
    assert parsed.original_message_ids == ("<orig@salesbot.example>",)
    assert EmailFlag.NESTED_MESSAGE in parsed.flags


def test_a_raw_resource_that_is_not_base64url_is_flagged_not_raised() -> None:
    parsed = parse_gmail_message({"id": "x", "raw": "@@@@!"})

    assert parsed.gmail_id == "x"
    assert {EmailFlag.DECODE_ERROR, EmailFlag.MALFORMED_MIME} <= parsed.flags


def test_a_metadata_resource_without_bodies_keeps_its_headers() -> None:
    resource = {
        "id": "m",
        "payload": {
            "mimeType": "text/plain",
            "headers": [{"name": "Subject", "value": "hello"}, {"name": "From", "value": "a@b.co"}],
        },
    }

    parsed = parse_gmail_message(resource)

    assert (parsed.subject, parsed.from_email, parsed.text) == ("hello", "a@b.co", "")


# --- reply text ----------------------------------------------------------------------------


def test_our_quoted_outbound_email_is_not_part_of_the_reply() -> None:
    text = (
        "Sounds good, send the fee schedule.\n\n"
        "On Tue, Nov 14, 2023 at 9:00 AM Maria Lopez <maria@appraisals.example> wrote:\n"
        "> Hi Dana, turn times in Travis County are down to 5 days.\n"
        "> Reply STOP to stop these emails.\n"
    )

    assert strip_reply(text) == "Sounds good, send the fee schedule."


def test_an_outlook_reply_loses_the_header_block_and_history() -> None:
    text = (
        "Please call me tomorrow.\n\n"
        "________________________________\n"
        "From: Maria Lopez <maria@appraisals.example>\n"
        "Sent: Tuesday, November 14, 2023 9:00 AM\n"
        "To: Dana Whitfield <dana@pinnaclelending.com>\n"
        "Subject: Turn times\n\n"
        "Hi Dana, ...\n"
    )

    assert strip_reply(text) == "Please call me tomorrow."


def test_a_german_outlook_header_ends_the_reply() -> None:
    text = (
        "Passt.\n\nVon: Maria <m@a.example>\nGesendet: Dienstag\nAn: Dana\nBetreff: Termin\n\nalt"
    )

    assert strip_reply(text) == "Passt."


def test_sign_off_stays_and_signature_block_goes() -> None:
    text = (
        "Tuesday works.\n\nThanks,\nDana\n\n-- \nDana Whitfield | Loan Officer\n"
        "Pinnacle Lending | 512-555-0100\n"
    )

    assert strip_reply(text) == "Tuesday works.\n\nThanks,\nDana"


def test_a_sentence_starting_with_thanks_keeps_what_follows() -> None:
    text = "Hi Maria,\nThanks, we got the appraisal.\nHowever the value looks off, can you call me?"

    assert strip_reply(text) == text


def test_a_hyphen_list_is_not_taken_for_a_signature() -> None:
    text = "We need these:\n- 123 Main St\n- 456 Oak Ave"

    assert strip_reply(text) == text


def test_sent_from_my_iphone_goes() -> None:
    assert strip_reply("Yes, Tuesday.\n\nSent from my iPhone") == "Yes, Tuesday."


def test_an_answer_below_the_quote_is_kept() -> None:
    text = "On Mon, Nov 13, 2023 at 9:00 AM Maria <m@a.example> wrote:\n> Tuesday?\n\nYes, 2pm."

    assert strip_reply(text) == "Yes, 2pm."


def test_a_forward_with_nothing_above_keeps_what_it_forwards() -> None:
    text = (
        "---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\n"
        "Date: Mon, Nov 13, 2023\nSubject: Order\nTo: Dana <d@example.com>\n\n"
        "Please quote 12 Elm St."
    )

    assert strip_reply(text) == "Please quote 12 Elm St."


def test_gmail_html_quote_is_cut_before_the_html_becomes_text() -> None:
    html = (
        '<div dir="ltr">Tuesday works.</div><br><div class="gmail_quote">'
        "<div>On Mon, Maria wrote:</div><blockquote>Would Tuesday work?</blockquote></div>"
    )

    assert strip_reply(html_to_text(html), html=html) == "Tuesday works."


def test_outlook_html_reply_header_is_cut() -> None:
    html = (
        "<p>Call me.</p><div id='divRplyFwdMsg'><b>From:</b> Maria<br><b>Sent:</b> Monday</div>"
        "<div>old text</div>"
    )

    assert strip_reply("", html=html) == "Call me."


def test_only_quotes_are_shown_as_they_are() -> None:
    assert strip_reply("> just a quote") == "> just a quote"


def test_the_parsed_email_carries_the_stripped_reply() -> None:
    raw = mime(
        "From: a@example.com",
        body="Yes please.\n\nOn Mon, Nov 13, 2023 at 9:00 AM Rep <r@x.example> wrote:\n> Quote?\n",
    )

    assert parse_raw(raw).reply_text == "Yes please."


@settings(max_examples=150, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("ab >-_:@.\n\r\t12On wrote From:Sent\u00a0ᐧ")), max_size=600
    )
)
def test_strip_reply_never_raises_and_never_grows(text: str) -> None:
    out = strip_reply(text)

    assert len(out) <= len(text)
