"""Reading what a reply's intent carries: a corpus of referral, meeting and "not now" replies
written for these tests (English, Spanish, French) with the expected readings, and garbage
that must give empty answers without raising."""

from __future__ import annotations

import time as timer
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.intents import ProposedTime
from integrations.holiday_calendar import public_holidays
from integrations.reply_intents import (
    MAX_REFERRALS,
    MAX_TIMES,
    extract_meeting_times,
    extract_referrals,
    extract_resume_date,
)

SENDER = "dana.reyes@acme-mortgage.com"
REPS = ("sam@lonestar-appraisals.com", "Rita <rita@lonestar-appraisals.com>")
# Thursday 3 December 2026, 15:14 in Dallas (the Date header says -0600).
SENT = datetime(2026, 12, 3, 15, 14, tzinfo=timezone(timedelta(hours=-6)))
CHICAGO = "America/Chicago"
US = public_holidays("US")

# --- referrals ------------------------------------------------------------------------------

REFERRALS: list[tuple[str, list[tuple[str, str | None, str | None]]]] = [
    (
        "I'm not the right person — try Karen Liu (karen.liu@gulfcoastlending.com), our "
        "appraisal desk manager.",
        [("karen.liu@gulfcoastlending.com", "Karen Liu", "appraisal desk manager")],
    ),
    (
        "Please reach out to our new VP of Lending, Tom Brady, tom@firstcitybank.com",
        [("tom@firstcitybank.com", "Tom Brady", "VP of Lending")],
    ),
    (
        "Tom Brady, our VP of Lending, at tom.brady@firstcitybank.com can help.",
        [("tom.brady@firstcitybank.com", "Tom Brady", "VP of Lending")],
    ),
    (
        "Hi Sam, I moved to servicing. Contact Karen Liu <karen@gulfcoast.com> instead.",
        [("karen@gulfcoast.com", "Karen Liu", None)],
    ),
    (
        "Mike O'Neil is the person for that: mike.oneil@pinnaclelending.com. Thanks, Dana",
        [("mike.oneil@pinnaclelending.com", "Mike O'Neil", None)],
    ),
    (
        "karen.liu@gulfcoastlending.com (Karen Liu) handles appraisals now.",
        [("karen.liu@gulfcoastlending.com", "Karen Liu", None)],
    ),
    (
        "Wrong person, sorry. Write to appraisals@heartlandcu.org",
        [("appraisals@heartlandcu.org", None, None)],
    ),
    (
        "I retired last month. The right person is Ana Torres: ana.torres@hillcountrybank.com, "
        "our chief credit officer.",
        [("ana.torres@hillcountrybank.com", "Ana Torres", "chief credit officer")],
    ),
    (
        "Try Karen Liu (karen.liu@gulfcoast.com) or, for Austin files, Raj Patel "
        "(raj.patel@gulfcoast.com).",
        [
            ("karen.liu@gulfcoast.com", "Karen Liu", None),
            ("raj.patel@gulfcoast.com", "Raj Patel", None),
        ],
    ),
    (
        "Please contact Karen Liu at KAREN.LIU@GulfCoast.COM, or our general inbox "
        "info@gulfcoast.com",
        [
            ("KAREN.LIU@gulfcoast.com", "Karen Liu", None),
            ("info@gulfcoast.com", None, "general inbox"),
        ],
    ),
    (
        "No soy la persona indicada. Por favor contacte a María García "
        "(maria.garcia@bancodelsur.mx), nuestra gerente de avalúos.",
        [("maria.garcia@bancodelsur.mx", "María García", "gerente de avalúos")],
    ),
    (
        "Ya no trabajo en el área; escríbale a José Luis Pérez: jlperez@cajapopular.mx",
        [("jlperez@cajapopular.mx", "José Luis Pérez", None)],
    ),
    (
        "Je ne suis pas la bonne personne, adressez-vous à Jean Dupont : "
        "jean.dupont@banquedulac.fr, notre responsable crédit.",
        [("jean.dupont@banquedulac.fr", "Jean Dupont", "responsable crédit")],
    ),
    (
        "Contactez plutôt Émilie Roy (emilie.roy@caisse-nord.ca).",
        [("emilie.roy@caisse-nord.ca", "Émilie Roy", None)],
    ),
]


@pytest.mark.parametrize(("text", "expected"), REFERRALS)
def test_a_referral_names_the_people_to_write_to_best_first(
    text: str, expected: list[tuple[str, str | None, str | None]]
) -> None:
    found = extract_referrals(text, sender=SENDER, own_addresses=REPS)

    assert [(c.email, c.name, c.role) for c in found] == expected


def test_a_referral_without_an_address_gives_no_candidate() -> None:
    text = "I'm not the right person — ask Karen Liu, our appraisal desk manager."

    assert extract_referrals(text, sender=SENDER) == []


def test_the_senders_own_address_our_reps_and_no_reply_mailboxes_are_never_candidates() -> None:
    text = (
        "Reach me at Dana.Reyes@ACME-mortgage.com, not through noreply@acme-mortgage.com; "
        "Sam (sam@lonestar-appraisals.com) and rita@lonestar-appraisals.com know. "
        "Try Karen Liu, karen@acme-mortgage.com."
    )

    found = extract_referrals(text, sender=f"Dana Reyes <{SENDER}>", own_addresses=REPS)

    assert [c.email for c in found] == ["karen@acme-mortgage.com"]


def test_a_named_referral_with_a_cue_outranks_a_bare_address_in_a_signature() -> None:
    text = (
        "Our assistant's address is desk@acme-mortgage.com for scheduling.\n"
        "For appraisal vendors, please reach out to Karen Liu (karen@acme-mortgage.com)."
    )

    found = extract_referrals(text, sender=SENDER)

    assert [c.email for c in found] == ["karen@acme-mortgage.com", "desk@acme-mortgage.com"]
    assert found[0].score > found[1].score


def test_an_address_repeated_is_one_candidate_and_quoted_lines_are_not_read() -> None:
    text = (
        "Try karen@gulfcoast.com — Karen Liu, karen@gulfcoast.com.\n"
        "> On Tue, Sam wrote: write to old.contact@gulfcoast.com"
    )

    found = extract_referrals(text, sender=SENDER)

    assert [c.email for c in found] == ["karen@gulfcoast.com"]


def test_at_most_five_candidates_are_kept() -> None:
    text = " ".join(f"Try person{i}@lender.com." for i in range(20))

    assert len(extract_referrals(text, sender=SENDER)) == MAX_REFERRALS


# --- meeting times --------------------------------------------------------------------------


def utc(day: int, hour: int, minute: int = 0, month: int = 12, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


MEETINGS: list[tuple[str, list[tuple[datetime | None, datetime | None]]]] = [
    ("Tuesday at 2pm works", [(utc(8, 20), None)]),
    (
        "how about Thursday 10:30 or Friday morning?",
        [(utc(10, 16, 30), None), (utc(4, 15), utc(4, 18))],
    ),
    ("next week any afternoon", [(utc(7, 19), utc(11, 23))]),
    ("Can we talk Dec 10 between 2 and 4pm?", [(utc(10, 20), utc(10, 22))]),
    ("I'm free tomorrow at 9am or 3pm", [(utc(4, 15), None), (utc(4, 21), None)]),
    ("Monday works — any time", [(utc(7, 15), utc(7, 23))]),
    ("12/15 at noon?", [(utc(15, 18), None)]),
    ("Let's do Wednesday from 9 to 10am.", [(utc(9, 15), utc(9, 16))]),
    ("Next Tuesday 3:30pm CT would be great", [(utc(8, 21, 30), None)]),
    ("January 6th at 11am?", [(utc(6, 17, 0, month=1, year=2027), None)]),
    ("2pm works for me", [(None, None)]),
    ("¿Le parece el martes a las 10?", [(utc(8, 16), None)]),
    ("Podemos hablar el lunes por la tarde o el miércoles a las 9:30.", [
        (utc(7, 19), utc(7, 23)),
        (utc(9, 15, 30), None),
    ]),
    ("Je suis disponible jeudi à 14h30 ou vendredi après-midi.", [
        (utc(10, 20, 30), None),
        (utc(4, 19), utc(4, 23)),
    ]),
    ("Demain matin, vers 10h ?", [(utc(4, 16), None)]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), MEETINGS)
def test_proposed_times_are_read_in_the_senders_zone_and_given_in_utc(
    text: str, expected: list[tuple[datetime | None, datetime | None]]
) -> None:
    found = extract_meeting_times(text, sent_at=SENT, tz=CHICAGO)

    assert [(p.start, p.end) for p in found] == expected
    assert all(p.words and p.words in " ".join(text.split()) for p in found)


def test_without_a_zone_name_the_date_headers_offset_places_the_times() -> None:
    tokyo = datetime(2026, 12, 3, 9, 0, tzinfo=timezone(timedelta(hours=9)))

    [found] = extract_meeting_times("Friday at 10am?", sent_at=tokyo)

    assert found.start == utc(4, 1)


def test_an_unknown_zone_name_falls_back_to_the_headers_offset() -> None:
    [found] = extract_meeting_times("Friday at 10am?", sent_at=SENT, tz="Mars/Olympus")

    assert found.start == utc(4, 16)


def test_words_that_propose_nothing_give_no_times() -> None:
    for text in (
        "Thanks, we're all set.",
        "We have 2 files and 3 appraisals in the pipeline.",
        "Call me at 555-1234.",
        "whenever suits you",
    ):
        assert extract_meeting_times(text, sent_at=SENT, tz=CHICAGO) == [], text


def test_at_most_eight_times_are_kept() -> None:
    text = " or ".join(f"Dec {d} at 10am" for d in range(4, 20))

    assert len(extract_meeting_times(text, sent_at=SENT, tz=CHICAGO)) == MAX_TIMES


# --- not now --------------------------------------------------------------------------------

NOT_NOW: list[tuple[str, date | None]] = [
    ("Not a good time. Try me in January.", date(2027, 1, 4)),  # 1 January is a holiday
    ("Please circle back after Q1.", date(2027, 4, 1)),
    ("Reach out again in 3 months.", date(2027, 3, 3)),
    ("We're swamped — after the holidays, please.", date(2027, 1, 4)),
    ("Maybe next year.", date(2027, 1, 4)),
    ("Try after tax season.", date(2027, 4, 16)),
    ("Ping me in a couple of weeks.", date(2026, 12, 17)),
    ("Next month is better.", date(2027, 1, 4)),
    ("Let's talk in the spring.", date(2027, 3, 1)),
    ("Check back after March 15.", date(2027, 3, 16)),
    ("Mid-January would work.", date(2027, 1, 15)),
    ("Nothing until after January.", date(2027, 2, 1)),
    ("We'll revisit vendors in Q2.", date(2027, 4, 1)),
    ("Try next quarter.", date(2027, 1, 4)),
    ("Busy through Q1; try me in April, or better in May.", date(2027, 5, 3)),  # the latest
    ("Escríbame en enero, por favor.", date(2027, 1, 4)),
    ("Mejor después de las fiestas.", date(2027, 1, 4)),
    ("Contácteme dentro de 3 meses.", date(2027, 3, 3)),
    ("Recontactez-moi en février.", date(2027, 2, 1)),
    ("Revenez vers moi après les fêtes.", date(2027, 1, 4)),
    ("Dans deux mois, peut-être.", date(2027, 2, 3)),
    ("Not interested right now, thanks.", None),
    ("May I ask who gave you my name?", None),
    ("We don't need appraisals.", None),
]


@pytest.mark.parametrize(("text", "expected"), NOT_NOW)
def test_not_now_gives_the_first_business_day_of_the_period_it_names(
    text: str, expected: date | None
) -> None:
    found = extract_resume_date(text, sent_at=SENT, tz=CHICAGO, holidays=US)

    assert (found.on if found is not None else None) == expected
    if found is not None:
        assert found.words in text
        assert found.on.weekday() < 5


def test_without_a_holiday_calendar_only_weekends_are_skipped() -> None:
    found = extract_resume_date("Try me in January.", sent_at=SENT)

    assert found is not None
    assert found.on == date(2027, 1, 1)  # a Friday


def test_next_year_written_in_february_is_the_next_january() -> None:
    february = datetime(2027, 2, 10, 12, 0, tzinfo=UTC)

    found = extract_resume_date("Maybe next year.", sent_at=february, holidays=US)
    past = extract_resume_date("Try after the holidays.", sent_at=february, holidays=US)

    assert found is not None
    assert found.on == date(2028, 1, 3)  # 1 January 2028 is a Saturday
    assert past is None


def test_a_date_further_than_two_years_is_not_a_not_now() -> None:
    assert extract_resume_date("Reach out in 5 years.", sent_at=SENT) is None


# --- garbage --------------------------------------------------------------------------------

GARBAGE = [
    "",
    " \n\t ",
    "x" * 1_000_000,
    "a@" * 500_000,
    ("Try karen@x.com " * 80_000),
    "\x00\x01\x02\x7f\ufffd" * 200_000,
    bytes(range(256)).decode("latin-1") * 4000,
    "@@@..@@.com Q9 quarter 99/99 at 99:99pm 31/31 Feb 31 in 0 months in 999 years",
    "🙂" * 250_000,
    # Worst cases measured for the patterns (each under 20 ms once bounded): many numbers,
    # many addresses, long dotted and hyphenated tokens.
    "1 " * 2000,
    "at 1 " * 800,
    "a@b.co, " * 500,
    "a@" + "a." * 2000 + "1",
    "Karen is " * 400 + "k@x.com",
]


@pytest.mark.parametrize("text", GARBAGE, ids=lambda t: f"{len(t)}:{t[:12]!r}")
def test_garbage_gives_bounded_answers_quickly_and_never_raises(text: str) -> None:
    started = timer.perf_counter()

    referrals = extract_referrals(text, sender=SENDER)
    times = extract_meeting_times(text, sent_at=SENT, tz=CHICAGO)
    resume = extract_resume_date(text, sent_at=SENT, tz=CHICAGO, holidays=US)

    assert len(referrals) <= MAX_REFERRALS
    assert len(times) <= MAX_TIMES
    assert resume is None or resume.on > SENT.date()
    assert timer.perf_counter() - started < 2.0


def test_input_that_is_not_text_gives_empty_answers() -> None:
    assert extract_referrals(None, sender=None) == []  # type: ignore[arg-type]
    assert extract_meeting_times(b"Tuesday at 2pm", sent_at=SENT) == []  # type: ignore[arg-type]
    assert extract_resume_date("in January", sent_at=None) is None  # type: ignore[arg-type]


def test_a_naive_sent_time_is_read_as_utc() -> None:
    [found] = extract_meeting_times("Friday at 10am", sent_at=datetime(2026, 12, 3, 12))

    assert found == ProposedTime(start=utc(4, 10), words="Friday at 10am")


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=600), tz=st.sampled_from([None, CHICAGO, "Europe/Paris", "bad/zone"]))
def test_any_text_gives_well_formed_answers(text: str, tz: str | None) -> None:
    referrals = extract_referrals(text, sender=SENDER, own_addresses=REPS)
    times = extract_meeting_times(text, sent_at=SENT, tz=tz)
    resume = extract_resume_date(text, sent_at=SENT, tz=tz, holidays=US)

    assert all(c.email.lower() != SENDER for c in referrals)
    assert all(t.start is None or t.start.utcoffset() == timedelta(0) for t in times)
    assert all(t.end is None or (t.start is not None and t.end > t.start) for t in times)
    assert resume is None or SENT.date() < resume.on <= SENT.date() + timedelta(days=2 * 366 + 30)


_WORDS = st.sampled_from(
    "try me in January after Q1 Tuesday at 2pm or Friday morning next week reach out to "
    "Karen Liu karen@x.com , ( ) : our VP of the 10:30 12/15 de las fiestas dans deux mois "
    "mañana por la tarde 3 months noon midi après-midi 99 0 - — > \n".split(" ")
)


@settings(max_examples=300, deadline=None)
@given(words=st.lists(_WORDS, max_size=40))
def test_any_mix_of_the_words_it_knows_gives_well_formed_answers(words: list[str]) -> None:
    text = " ".join(words)

    test_any_text_gives_well_formed_answers.hypothesis.inner_test(text, CHICAGO)  # type: ignore[attr-defined]
