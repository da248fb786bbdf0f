"""Every mail of the third-party corpus parses, and what bounce handling needs is read from it.

The corpus (`tests/corpus`, see its README and SOURCES) holds real bounces, complaints,
auto-replies and replies from many MTAs and clients, with the results their source projects
expect. Counts asserted here are exact: a change that reads more (or less) should update them.
"""

from __future__ import annotations

import base64
import email
import email.message
import json
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest

from domain.email_message import KEPT_HEADERS, EmailFlag, ParsedEmail
from integrations.gmail.mime import parse_gmail_message, parse_raw
from tests.support.corpus import corpus_dir, corpus_files, load_manifest

CORPUS = corpus_dir()
MAIL_FILES = corpus_files("bounces", "autoreplies", "replies")
EML_FILES = [p for p in MAIL_FILES if p.suffix == ".eml"]
BOUNCES = {entry["file"]: entry for entry in load_manifest("bounces")}


def _name(path: Path) -> str:
    return str(path.relative_to(CORPUS))


def _parse(relative: str) -> ParsedEmail:
    return parse_raw((CORPUS / relative).read_bytes())


def _content_types(raw: bytes) -> set[str]:
    message = email.message_from_bytes(raw, policy=policy.default)
    return {part.get_content_type() for part in message.walk()}


def test_the_corpus_has_the_files_its_readme_lists() -> None:
    assert len(BOUNCES) == 173
    assert len(EML_FILES) == 199


@pytest.mark.parametrize("path", MAIL_FILES, ids=_name)
def test_every_corpus_mail_parses_into_storable_fields(path: Path) -> None:
    raw = path.read_bytes()

    parsed = parse_raw(raw)

    assert parsed.size == len(raw)
    assert len(parsed.reply_text) <= len(parsed.text) + len(parsed.html or "")
    assert ParsedEmail.model_validate_json(parsed.model_dump_json()) == parsed
    if path.suffix == ".eml":
        malformed = EmailFlag.MALFORMED_MIME in parsed.flags
        assert parsed.from_email or parsed.subject or parsed.delivery_status or malformed
        assert (
            parsed.text.strip()
            or parsed.delivery_status
            or parsed.embedded_messages
            or parsed.attachments
            or malformed
        )
        assert parsed.date is None or parsed.date.utcoffset() == timedelta(0)


@pytest.mark.parametrize("path", EML_FILES, ids=_name)
def test_kept_headers_of_the_top_level_are_all_kept(path: Path) -> None:
    raw = path.read_bytes()
    message = email.message_from_bytes(raw, policy=policy.default)
    present = {name for name in KEPT_HEADERS if message.get(name) is not None}

    parsed = parse_raw(raw)

    assert present <= set(parsed.headers)


@pytest.mark.parametrize("path", EML_FILES, ids=_name)
def test_a_gmail_raw_resource_parses_like_the_message(path: Path) -> None:
    raw = path.read_bytes()
    resource = {
        "id": "18c2f0a",
        "threadId": "18c2f00",
        "labelIds": ["INBOX"],
        "internalDate": "1700000000000",
        "raw": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }

    parsed = parse_gmail_message(resource)

    direct = parse_raw(raw)
    assert parsed.text == direct.text
    assert parsed.message_id == direct.message_id
    assert parsed.flags == direct.flags
    assert (parsed.gmail_id, parsed.gmail_thread_id, parsed.label_ids) == (
        "18c2f0a",
        "18c2f00",
        ("INBOX",),
    )
    assert parsed.internal_date == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def _sisimai_dsn_cases() -> list[tuple[str, list[str]]]:
    cases = []
    for name, entry in BOUNCES.items():
        if not name.startswith("bounces/sisimai/"):
            continue
        wanted = [
            r["deliverystatus"]
            for r in entry["expected"].get("recipients", [])
            if r.get("deliverystatus")
        ]
        if wanted and "message/delivery-status" in _content_types((CORPUS / name).read_bytes()):
            cases.append((name, wanted))
    return cases


def test_dsn_status_matches_sisimai_for_bounces_with_a_delivery_status_part() -> None:
    # sisimai sometimes refines the code the MTA wrote ("5.0.0" -> "5.1.1") from the
    # diagnostic text; that is bounce classification, not parsing, so those stay misses.
    cases = _sisimai_dsn_cases()
    matched: list[str] = []
    missed: list[str] = []
    for name, wanted in cases:
        parsed = _parse(name)
        statuses = {r.status for r in parsed.delivery_status}
        (matched if statuses & set(wanted) else missed).append(name)

    assert (len(matched), len(cases)) == (59, 71), missed


def test_every_sisimai_delivery_status_part_names_its_final_recipient() -> None:
    without = [
        name
        for name, _wanted in _sisimai_dsn_cases()
        if not any(r.final_recipient for r in _parse(name).delivery_status)
    ]
    # These DSNs really lack the field (McAfee writes only Original-Recipient).
    assert without == [
        "bounces/sisimai/lhost-mcafee-01.eml",
        "bounces/sisimai/lhost-messagelabs-01.eml",
        "bounces/sisimai/lhost-postfix-64.eml",
        "bounces/sisimai/lhost-x5-01.eml",
    ]


@pytest.mark.parametrize(
    "name", [n for n in BOUNCES if n.startswith("bounces/mail_gem/report_")], ids=str
)
def test_dsn_fields_match_the_mail_gem(name: str) -> None:
    expected = BOUNCES[name]["expected"]

    recipient = _parse(name).delivery_status[0]

    assert recipient.action == expected["action"]
    assert recipient.final_recipient == expected["final_recipient"]
    assert recipient.status == expected["error_status"]
    assert recipient.diagnostic_code == expected["diagnostic_code"]
    assert recipient.remote_mta == expected["remote_mta"]


@pytest.mark.parametrize(
    "name", [n for n, e in BOUNCES.items() if "diagnostic_code" in e["expected"]], ids=str
)
def test_status_and_diagnostic_code_match_the_source_tests(name: str) -> None:
    expected: dict[str, Any] = BOUNCES[name]["expected"]

    parsed = _parse(name)

    assert parsed.headers["Diagnostic-Code"] == expected["diagnostic_code"]
    assert parsed.delivery_status[0].status == expected.get("status", expected.get("error_status"))


def test_a_bounce_for_five_addresses_lists_five_recipients() -> None:
    parsed = _parse("bounces/mail_gem/multi_address_bounce1.eml")

    assert [r.address for r in parsed.delivery_status] == [
        "bbbbvhvbbvkjbhfbvbvjhb@gmail.com",
        "bscdbcjhasbcjhbdscbhbsdhcbj@gmail.com",
        "egyfefsdvsfvvhjsd@gmail.com",
        "kfhejkfbsjkjsbhds@gmail.com",
        "qfvhgsvhgsduiohncdhcvhsdfvsfygusd@gmail.com",
    ]


def _embedded_header_has_message_id(raw: bytes) -> bool:
    message = email.message_from_bytes(raw, policy=policy.default)
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and any(
                isinstance(m, email.message.Message) and m.get("Message-ID") for m in inner[:1]
            ):
                return True
        elif kind == "text/rfc822-headers" and "message-id:" in part.get_content().lower():
            return True
    return False


def test_bounces_carrying_the_original_headers_give_its_message_id() -> None:
    carrying = [
        name
        for name in BOUNCES
        if {"message/rfc822", "text/rfc822-headers"} & _content_types((CORPUS / name).read_bytes())
    ]
    with_id = [n for n in carrying if _embedded_header_has_message_id((CORPUS / n).read_bytes())]
    found = [n for n in with_id if _parse(n).original_message_ids]

    assert (len(carrying), len(with_id)) == (101, 93)
    assert found == with_id


def test_sisimai_bounces_without_such_a_part_often_quote_the_original_inline() -> None:
    sisimai = [n for n in BOUNCES if n.startswith("bounces/sisimai/")]
    found = [n for n in sisimai if _parse(n).original_message_ids]

    assert (len(found), len(sisimai)) == (116, 143)


def test_the_original_message_id_of_a_postfix_bounce_is_the_one_sent() -> None:
    parsed = _parse("bounces/mail_gem/report_530.eml")

    assert parsed.embedded_messages[0].source == "text/rfc822-headers"
    assert parsed.original_message_ids == ("<200712232303.lBNN3jDq002941@mail12.rrrr.com.au>",)


def test_a_complaint_keeps_its_feedback_type() -> None:
    parsed = _parse("bounces/sisimai/arf-01.eml")

    assert parsed.headers["Feedback-Type"] == "abuse"
    assert EmailFlag.NESTED_MESSAGE in parsed.flags


def test_a_read_receipt_names_the_message_it_acknowledges() -> None:
    parsed = _parse("autoreplies/flanker-disposition-notification.eml")

    assert parsed.headers["Original-Message-ID"] == "<199509192301.23456@example.org>"
    assert parsed.original_message_ids[0] == "<199509192301.23456@example.org>"


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("autoreplies/sisimai/rfc3834-01.eml", {"Auto-Submitted": "auto-replied"}),
        ("autoreplies/sisimai/rfc3834-02.eml", {"X-Auto-Response-Suppress": "All"}),
        (
            "autoreplies/sisimai/rfc3834-06.eml",
            {
                "Auto-Submitted": "auto-replied",
                "Precedence": "bulk",
                "X-Auto-Response-Suppress": "OOF, AutoReply, DR, NDR, RN, NRN",
            },
        ),
    ],
)
def test_auto_reply_headers_are_kept(name: str, headers: dict[str, str]) -> None:
    parsed = _parse(name)

    assert {k: parsed.headers[k] for k in headers} == headers


def test_two_references_headers_give_the_valid_ids_of_both() -> None:
    parsed = _parse("replies/threading/multiple_references_with_one_invalid.eml")
    expected = json.loads((CORPUS / "replies/threading/cases.json").read_text(encoding="utf-8"))

    assert expected[0]["expected"]["references"] == "foo@bar.net"
    assert parsed.references == ("<foo@bar.net>", "<baz@bar.net>")


def test_an_empty_in_reply_to_reads_as_none() -> None:
    parsed = _parse("replies/threading/empty_in_reply_to.eml")

    assert parsed.in_reply_to is None
    assert parsed.message_id is not None
