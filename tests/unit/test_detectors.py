"""The detector pass on small hand-made messages: out-of-office dates in four languages,
unsubscribe requests, bounces, complaints, automatic answers, and hostile input."""

from __future__ import annotations

import time
from datetime import date

import pytest

from domain.classification import Category, Decider, Intent
from domain.detection import (
    BounceSeverity,
    Detection,
    DetectionContext,
    MessageKind,
    UnsubscribeVia,
)
from domain.unsubscribe_address import build_unsubscribe_address
from integrations.mail_signals import detect_message

REP = "sam@appraisalfirm.example"
CONTEXT = DetectionContext(
    rep_addresses=frozenset({"Sam@AppraisalFirm.example"}),
    unsubscribe_mailboxes=frozenset({REP}),
)


def mime(*headers: str, body: str = "", content_type: str = "text/plain") -> bytes:
    """Build a message as it arrives: header lines, a blank line, the body, CRLF line ends."""
    lines = list(headers)
    if not any(h.lower().startswith("content-type:") for h in headers):
        lines.append(f"Content-Type: {content_type}; charset=utf-8")
        lines.append("Content-Transfer-Encoding: 8bit")
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


def reply(
    body: str, *, subject: str = "Re: Appraisal turn times", extra: tuple[str, ...] = ()
) -> bytes:
    """A client's message to our rep."""
    return mime(
        "From: Dana Whitfield <dana@pinnaclelending.example>",
        f"To: {REP}",
        f"Subject: {subject}",
        "Date: Mon, 20 Jul 2026 09:30:00 -0500",
        "Message-ID: <r1@pinnaclelending.example>",
        "In-Reply-To: <o1@appraisalfirm.example>",
        *extra,
        body=body,
    )


def detect(raw: bytes) -> Detection:
    return detect_message(raw, context=CONTEXT)


# --- out-of-office and its return date ---------------------------------------------------------


def ooo(subject: str, body: str, *, sent: str = "Mon, 20 Jul 2026 09:30:00 +0200") -> Detection:
    return detect(
        mime(
            "From: Dana Whitfield <dana@pinnaclelending.example>",
            f"To: {REP}",
            f"Subject: {subject}",
            f"Date: {sent}",
            "Auto-Submitted: auto-replied",
            body=body,
        )
    )


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        # English
        (
            "Out of Office: Re: turn times",
            "I am out of the office until Friday, July 31.",
            "2026-07-31",
        ),
        (
            "Automatic reply: turn times",
            "I will be traveling for work on July 27-31 with limited access to email.",
            "2026-07-31",
        ),
        (
            "Out of office",
            "I'm on vacation from 24 to 31 July and will reply when I'm back.",
            "2026-07-31",
        ),
        (
            "Automatic reply: turn times",
            "I'm away and will be back in the office on Monday.",
            "2026-07-27",
        ),
        ("Out of office", "I am on leave and will return on 8/3/2026.", "2026-08-03"),
        # Spanish
        (
            "Respuesta automática: plazos",
            "Estoy fuera de la oficina hasta el 31 de julio.",
            "2026-07-31",
        ),
        (
            "Fuera de la oficina",
            "Estaré de vacaciones del 24 al 31 de julio. Regresaré pronto.",
            "2026-07-31",
        ),
        ("Respuesta automática", "Estoy de vacaciones. Regresaré el lunes.", "2026-07-27"),
        # French
        (
            "Réponse automatique : délais",
            "Je suis absent du bureau jusqu'au 31 juillet.",
            "2026-07-31",
        ),
        ("Absence du bureau", "Je serai en congé du 24 au 31 juillet inclus.", "2026-07-31"),
        ("Réponse automatique", "Je suis en vacances, de retour le 1er août.", "2026-08-01"),
        # German
        (
            "Abwesenheitsnotiz: Bearbeitungszeiten",
            "Ich bin bis zum 31. Juli nicht im Büro.",
            "2026-07-31",
        ),
        ("Automatische Antwort: Termine", "Ich bin vom 24. bis 31. Juli im Urlaub.", "2026-07-31"),
        ("Abwesenheitsnotiz", "Ich bin ab dem 03.08.2026 wieder im Büro erreichbar.", "2026-08-03"),
    ],
)
def test_an_out_of_office_gives_the_end_of_the_absence_it_states(
    subject: str, body: str, expected: str
) -> None:
    found = ooo(subject, body)

    assert found.kind is MessageKind.OUT_OF_OFFICE
    assert found.auto_reply is not None
    assert found.auto_reply.return_date == date.fromisoformat(expected)


def test_an_english_numeric_date_that_cannot_be_month_first_is_read_day_first() -> None:
    found = ooo("Out of office", "I am out of the office until 31/07/2026.")

    assert found.auto_reply is not None
    assert found.auto_reply.return_date == date(2026, 7, 31)


def test_a_person_asking_to_click_and_confirm_is_not_a_challenge_response() -> None:
    found = detect(reply("Please click here to confirm the inspection time, thanks."))

    assert found.kind is MessageKind.ORDINARY


def test_a_date_without_a_year_is_the_next_one_after_the_message() -> None:
    found = ooo(
        "Out of office",
        "I am out of the office until January 5.",
        sent="Mon, 21 Dec 2026 10:00:00 +0000",
    )

    assert found.auto_reply is not None
    assert found.auto_reply.return_date == date(2027, 1, 5)


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Out of office", "I am out of the office with limited access to email."),
        (
            "Abwesenheitsnotiz",
            "Ich bin nicht im Büro. In dringenden Fällen wenden Sie sich an Kim.",
        ),
        (
            "Réponse automatique",
            "Je suis absent du bureau. Merci de contacter Kim au 01 23 45 67 89.",
        ),
        (
            "Respuesta automática",
            "Estoy fuera de la oficina. Para urgencias llame al +34 600 000 000.",
        ),
    ],
)
def test_an_out_of_office_that_states_no_date_has_none(subject: str, body: str) -> None:
    found = ooo(subject, body)

    assert found.kind is MessageKind.OUT_OF_OFFICE
    assert found.auto_reply is not None
    assert found.auto_reply.return_date is None


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: turn times",
        "Automatische Antwort: Termine",
        "Réponse automatique : délais",
        "Respuesta automática: plazos",
        "Abwesenheitsnotiz: Termine",
    ],
)
def test_an_automatic_reply_subject_alone_marks_an_out_of_office(subject: str) -> None:
    found = detect(reply("Back on July 31.", subject=subject))

    assert found.kind is MessageKind.OUT_OF_OFFICE


def test_a_person_saying_they_will_be_back_is_not_an_auto_reply() -> None:
    found = detect(reply("Thanks! I'm out of the office until July 31, let's talk after that."))

    assert found.kind is MessageKind.ORDINARY


def test_bulk_precedence_counts_only_with_automatic_answer_wording() -> None:
    newsletter = detect(reply("Our July market update is here.", extra=("Precedence: bulk",)))
    auto = detect(
        reply(
            "Thank you for your message. I am on vacation until July 31.",
            extra=("Precedence: bulk",),
        )
    )

    assert newsletter.kind is MessageKind.ORDINARY
    assert auto.kind is MessageKind.OUT_OF_OFFICE


def test_an_auto_reply_that_is_not_an_absence_is_a_plain_auto_reply() -> None:
    found = detect(reply("This mailbox is no longer monitored.", extra=("X-Autoreply: yes",)))

    assert found.kind is MessageKind.AUTO_REPLY
    assert found.auto_reply is not None
    assert found.auto_reply.out_of_office is False
    assert found.auto_reply.return_date is None


def test_a_read_receipt_is_its_own_kind_not_an_out_of_office() -> None:
    found = detect(
        mime(
            "From: Dana Whitfield <dana@pinnaclelending.example>",
            f"To: {REP}",
            "Subject: Read: Appraisal turn times",
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=b",
            body="--b\nContent-Type: text/plain\n\nYour message was read on July 20.\n"
            "--b\nContent-Type: message/disposition-notification\n\n"
            "Final-Recipient: rfc822; dana@pinnaclelending.example\n"
            "Original-Message-ID: <o1@appraisalfirm.example>\n"
            "Disposition: manual-action/MDN-sent-manually; displayed\n--b--\n",
        )
    )

    assert found.kind is MessageKind.READ_RECEIPT


def test_a_challenge_response_request_is_its_own_kind() -> None:
    found = detect(
        reply(
            "I'm protecting myself from junk mail. Please click the link below to verify "
            "that you are a real person.",
            subject="Please confirm your message",
            extra=("Auto-Submitted: auto-replied",),
        )
    )

    assert found.kind is MessageKind.CHALLENGE_RESPONSE


# --- unsubscribe requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "Please remove me from your mailing list.",
        "Unsubscribe",
        "Take me off your list, thanks.",
        "Stop emailing me.",
        "Por favor, quiero darme de baja.",
        "No me envíen más correos.",
        "Merci de me désabonner de votre liste.",
        "Retirez-moi de votre liste s'il vous plaît.",
        "Bitte tragen Sie mich aus Ihrem Verteiler aus.",
        "Bitte melden Sie mich ab.",
    ],
)
def test_a_request_to_stop_in_any_of_the_four_languages_is_an_unsubscribe(body: str) -> None:
    found = detect(reply(body))

    assert found.unsubscribe is not None
    assert found.unsubscribe.via is UnsubscribeVia.TEXT


@pytest.mark.parametrize(
    "body",
    [
        "Please don't remove me from your list, I like these updates.",
        "No quiero darme de baja, solo cambiar mi correo.",
        "Bitte nicht abmelden, ich lese das gern.",
        "Yes, send me the fee schedule.\n\n> To unsubscribe, click here: https://appraisalfirm.example/u/x",
        "Sure, Tuesday works.\n\nIf you no longer wish to receive these emails, unsubscribe here.",
        "Can you remove me from the cc on this thread? Kim handles it now.",
        "¿Pueden dar de baja la orden 4471? El cliente canceló.",
        "Ich möchte mich vom Termin am Freitag abmelden.",
        "I'll opt out of the Friday call, Kim will join.",
    ],
)
def test_negations_footers_and_quoted_outreach_are_not_unsubscribe_requests(body: str) -> None:
    found = detect(reply(body))

    assert found.unsubscribe is None


def test_the_quoted_outreach_with_our_footer_below_a_reply_is_not_read() -> None:
    body = (
        "Sounds good, call me Thursday.\n\n"
        "On Mon, Jul 20, 2026 at 9:00 AM Sam Rep <sam@appraisalfirm.example> wrote:\n"
        "> Hi Dana, our turn times are 5 days.\n"
        "> Reply STOP or unsubscribe to opt out.\n"
    )

    assert detect(reply(body)).unsubscribe is None


def test_mail_to_our_list_unsubscribe_address_is_an_unsubscribe_whatever_it_says() -> None:
    address = build_unsubscribe_address(REP, "tok3n.sig")
    raw = mime(
        "From: Dana Whitfield <dana@pinnaclelending.example>",
        f"To: {address}",
        "Subject: ",
        body="",
    )

    found = detect(raw)

    assert found.unsubscribe is not None
    assert found.unsubscribe.via is UnsubscribeVia.ADDRESS
    assert found.unsubscribe.token == "tok3n.sig"
    assert found.classification() is not None
    assert found.classification().category is Category.REMOVE  # type: ignore[union-attr]


def test_mail_from_our_own_rep_is_flagged_and_never_an_unsubscribe() -> None:
    raw = mime(
        f"From: Sam Rep <{REP}>",
        "To: dana@pinnaclelending.example",
        "Subject: Unsubscribe",
        body="Unsubscribe",
    )

    found = detect(raw)

    assert found.from_own_rep is True
    assert found.unsubscribe is None


# --- bounces and complaints -------------------------------------------------------------------


def dsn(*blocks: str, original_id: str = "<o1@appraisalfirm.example>") -> bytes:
    return mime(
        "From: Mail Delivery System <MAILER-DAEMON@mx.pinnaclelending.example>",
        f"To: {REP}",
        "Subject: Undelivered Mail Returned to Sender",
        "Auto-Submitted: auto-replied",
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b",
        body="--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
        + "\n\n".join(blocks)
        + "\n--b\nContent-Type: text/rfc822-headers\n\n"
        f"From: {REP}\nTo: dana@pinnaclelending.example\nMessage-ID: {original_id}\n"
        "Subject: Appraisal turn times\n\n--b--\n",
    )


def test_a_dsn_gives_each_failed_recipient_hard_or_soft_and_our_message_id() -> None:
    found = detect(
        dsn(
            "Final-Recipient: rfc822; dana@pinnaclelending.example\nAction: failed\nStatus: 5.1.1",
            "Final-Recipient: rfc822; kim@pinnaclelending.example\nAction: failed\nStatus: 4.2.2",
            "Final-Recipient: rfc822; lee@pinnaclelending.example\nAction: delayed\nStatus: 4.4.1",
        )
    )

    assert found.kind is MessageKind.BOUNCE  # not an auto-reply, despite Auto-Submitted
    assert found.bounce is not None
    assert [(r.address, r.severity, r.status) for r in found.bounce.recipients] == [
        ("dana@pinnaclelending.example", BounceSeverity.HARD, "5.1.1"),
        ("kim@pinnaclelending.example", BounceSeverity.SOFT, "4.2.2"),
        ("lee@pinnaclelending.example", BounceSeverity.DELAYED, "4.4.1"),
    ]
    assert found.bounce.original_message_id == "<o1@appraisalfirm.example>"
    assert found.bounce.is_hard is True


def test_a_dsn_that_reports_delivery_is_a_delivery_report_not_a_bounce() -> None:
    found = detect(
        dsn(
            "Final-Recipient: rfc822; dana@pinnaclelending.example\n"
            "Action: delivered\nStatus: 2.0.0"
        )
    )

    assert found.kind is MessageKind.DELIVERY_REPORT
    assert found.bounce is None


def test_a_text_bounce_without_a_dsn_gives_the_recipient_and_the_smtp_code() -> None:
    raw = mime(
        "From: MAILER-DAEMON@mx.example.net",
        f"To: {REP}",
        "Subject: failure notice",
        body="Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
        "<dana@pinnaclelending.example>:\nRemote host said: 550 5.1.1 User unknown\n",
    )

    found = detect(raw)

    assert found.bounce is not None
    assert [(r.address, r.severity, r.status) for r in found.bounce.recipients] == [
        ("dana@pinnaclelending.example", BounceSeverity.HARD, "5.1.1")
    ]


def test_an_arf_report_is_a_complaint_with_its_type_and_our_message_id() -> None:
    raw = mime(
        "From: Feedback Loop <fbl@mail.example>",
        f"To: {REP}",
        "Subject: Abuse report",
        "Content-Type: multipart/report; report-type=feedback-report; boundary=b",
        body="--b\nContent-Type: text/plain\n\nA complaint about a message.\n"
        "--b\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
        "User-Agent: FBL/1.0\nVersion: 1\nOriginal-Rcpt-To: dana@pinnaclelending.example\n"
        "--b\nContent-Type: message/rfc822\n\n"
        f"From: {REP}\nTo: dana@pinnaclelending.example\nMessage-ID: <o1@appraisalfirm.example>\n"
        "Subject: Appraisal turn times\n\nHello\n--b--\n",
    )

    found = detect(raw)

    assert found.kind is MessageKind.COMPLAINT
    assert found.complaint is not None
    assert found.complaint.feedback_type == "abuse"
    assert found.complaint.original_message_id == "<o1@appraisalfirm.example>"
    assert found.complaint.recipients == ("dana@pinnaclelending.example",)
    classification = found.classification()
    assert classification is not None
    assert (classification.category, classification.intent, classification.decided_by) == (
        Category.REMOVE,
        Intent.UNSUBSCRIBE,
        Decider.DETECTOR,
    )


def test_a_person_writing_about_an_undeliverable_address_is_not_a_bounce() -> None:
    found = detect(
        reply(
            "My old address is undeliverable, please use kim@pinnaclelending.example.",
            subject="Undeliverable address",
        )
    )

    assert found.kind is MessageKind.ORDINARY
    assert found.classification() is None


# --- hostile and broken input -----------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"\x00\xff\xfe garbage \x80"])
def test_a_malformed_message_gives_nothing_detected_and_a_note(raw: bytes) -> None:
    found = detect(raw)

    assert found.kind is MessageKind.ORDINARY
    assert (found.bounce, found.auto_reply, found.unsubscribe) == (None, None, None)
    assert "message has no header fields" in found.notes


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \x80",
        b"From: postmaster@x.example\r\nSubject: Undeliverable\r\n\r\n" + b"a" * 2_000_000,
        b"From: postmaster@x.example\r\nSubject: Undeliverable\r\n\r\n" + b"@" * 300_000,
        b"From: postmaster@x.example\r\nSubject: Undeliverable\r\n\r\n" + b"x@" * 150_000,
        b"Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\n" + b"July 1 " * 50_000,
        b"Subject: Unsubscribe\r\n\r\n" + b"remove me not " * 50_000,
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" * 2000,
    ],
)
def test_garbage_and_hostile_messages_are_handled_in_bounded_time_without_raising(
    raw: bytes,
) -> None:
    started = time.perf_counter()

    found = detect(raw)

    assert isinstance(found, Detection)
    assert time.perf_counter() - started < 20  # a sanity bound, not a speed figure
