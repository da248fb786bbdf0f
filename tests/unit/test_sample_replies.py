"""The sandbox's sample replies: each parses with the product's MIME parser, is threaded to the
outreach it answers, and is what the detectors and the model are expected to take it for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.classification import Category, Intent
from domain.detection import BounceSeverity, DetectionContext, MessageKind
from integrations.gmail.mime import parse_raw
from integrations.mail_signals.detect import detect_message
from sandbox import sample_replies
from sandbox.sample_replies import BOUNCE, KEYS, OUT_OF_OFFICE, SAMPLES, build, reading_for

CONTACT = "dana.whitfield@pinnaclelending.example"
REP = "maria.lopez@sandbox-appraisals.example"
OUTREACH_ID = "<20261201.abc123@salesbot.local>"
SUBJECT = "Turn times in Travis County are down to 5 days"
AT = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)


def built(key: str) -> bytes:
    return build(
        key,
        contact_email=CONTACT,
        contact_name="Dana Whitfield",
        rep_email=REP,
        subject=SUBJECT,
        in_reply_to=OUTREACH_ID,
        at=AT,
        rep_name="Maria Lopez",
    )


def detect(raw: bytes) -> object:
    return detect_message(raw, context=DetectionContext(rep_addresses=frozenset({REP})))


def test_there_are_twelve_kinds_each_with_a_distinct_key_and_marker() -> None:
    assert len(KEYS) == 12
    assert len(set(KEYS)) == 12
    assert len({s.marker.casefold() for s in SAMPLES}) == 12


@pytest.mark.parametrize("key", KEYS)
def test_each_sample_names_a_known_category_and_intent(key: str) -> None:
    found = sample_replies.sample(key)
    assert Category(found.category).value == found.category
    assert Intent(found.intent).value == found.intent
    if found.reading is not None:
        assert Category(found.reading.category) == Category(found.category)
        assert Intent(found.reading.intent) == Intent(found.intent)


@pytest.mark.parametrize("key", KEYS)
def test_each_sample_parses_and_is_threaded_to_the_outreach(key: str) -> None:
    parsed = parse_raw(built(key))
    assert parsed.defects == ()
    assert parsed.in_reply_to == OUTREACH_ID
    assert parsed.references == (OUTREACH_ID,)
    assert parsed.to == (REP,)
    assert parsed.message_id is not None
    assert parsed.date == AT


@pytest.mark.parametrize("key", [k for k in KEYS if sample_replies.sample(k).detected != BOUNCE])
def test_a_persons_answer_comes_from_the_contact_with_its_marker_in_the_new_text(key: str) -> None:
    parsed = parse_raw(built(key))
    found = sample_replies.sample(key)
    assert parsed.from_email == CONTACT
    assert found.marker.casefold() in parsed.reply_text.casefold()
    assert SUBJECT in parsed.subject


@pytest.mark.parametrize("key", KEYS)
def test_the_detectors_take_each_sample_for_what_it_is(key: str) -> None:
    detection = detect(built(key))
    assert detection.kind.value == sample_replies.sample(key).detected  # type: ignore[attr-defined]


def test_the_out_of_office_carries_auto_reply_headers_and_a_return_date() -> None:
    raw = built("out_of_office")
    parsed = parse_raw(raw)
    detection = detect(raw)
    assert parsed.headers["Auto-Submitted"] == "auto-replied"
    assert b"\nX-Autoreply: yes\n" in raw
    assert detection.kind is MessageKind.OUT_OF_OFFICE  # type: ignore[attr-defined]
    assert detection.auto_reply.return_date == datetime(2026, 12, 14).date()  # type: ignore[attr-defined]


def test_the_bounce_is_a_hard_dsn_from_the_mailer_daemon_naming_the_original() -> None:
    raw = built("bounce")
    parsed = parse_raw(raw)
    detection = detect(raw)
    assert parsed.from_email == "mailer-daemon@googlemail.com"
    assert parsed.original_message_ids == (OUTREACH_ID,)
    assert [r.status for r in parsed.delivery_status] == ["5.1.1"]
    bounce = detection.bounce  # type: ignore[attr-defined]
    assert bounce.original_message_id == OUTREACH_ID
    assert [(r.address, r.severity) for r in bounce.recipients] == [(CONTACT, BounceSeverity.HARD)]


def test_the_unsubscribe_request_is_found_by_the_detectors() -> None:
    detection = detect(built("unsubscribe"))
    assert detection.unsubscribe is not None  # type: ignore[attr-defined]
    assert detection.classification().category is Category.REMOVE  # type: ignore[attr-defined]


def test_the_same_arguments_give_the_same_bytes() -> None:
    assert built("meeting") == built("meeting")
    assert built("bounce") == built("bounce")


def test_the_model_reading_is_found_by_its_marker_and_only_for_a_persons_messages() -> None:
    text = parse_raw(built("amc_order")).reply_text
    reading = reading_for(text)
    assert reading is not None
    assert reading.as_tool_input()["entities"]["order_numbers"] == ["AMC-48213"]
    assert reading_for("Hello, how are you?") is None
    assert sample_replies.sample(OUT_OF_OFFICE).reading is None
    injection = reading_for(parse_raw(built("injection")).reply_text)
    assert injection is not None
    assert injection.instructs_model is True


def test_an_unknown_key_or_address_is_refused_with_what_to_give() -> None:
    with pytest.raises(ValueError, match="known: positive"):
        sample_replies.sample("nope")
    with pytest.raises(ValueError, match="contact_email needs an email address"):
        build(
            "positive",
            contact_email="dana",
            contact_name="Dana",
            rep_email=REP,
            subject=SUBJECT,
            in_reply_to=OUTREACH_ID,
        )
    with pytest.raises(ValueError, match="Message-ID"):
        build(
            "positive",
            contact_email=CONTACT,
            contact_name="Dana",
            rep_email=REP,
            subject=SUBJECT,
            in_reply_to=" ",
        )
