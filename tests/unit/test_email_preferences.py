"""Email-type preferences: the pure model (types, defaults, validation, what maps to what)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.email_preferences import (
    OPTIONAL_TYPES,
    UNSUBSCRIBED_FROM_FOLLOW_UPS,
    EmailPreferences,
    EmailType,
    email_type_of_step,
    email_type_or_none,
    parse_changes,
    parse_email_type,
    parse_preference_cell,
    refusal,
    stop_reason,
)
from domain.errors import InvalidInput

optional_types = st.sampled_from(OPTIONAL_TYPES)
changes = st.dictionaries(optional_types, st.booleans())


def test_there_are_the_five_types_of_the_original_system() -> None:
    assert [t.value for t in EmailType] == [
        "newsletter",
        "campaign",
        "follow_up",
        "announcement",
        "transactional",
    ]


def test_a_contact_with_no_choices_receives_every_type() -> None:
    prefs = EmailPreferences.from_stored({})
    assert all(prefs.allows(t) for t in EmailType)
    assert EmailPreferences.from_stored(None) == prefs


def test_only_a_stored_false_turns_a_type_off() -> None:
    prefs = EmailPreferences.from_stored(
        {"newsletter": False, "campaign": "no", "follow_up": 0, "bogus": False, "x": None}
    )
    assert prefs.turned_off == frozenset({EmailType.NEWSLETTER})


def test_a_stored_transactional_false_is_ignored() -> None:
    assert EmailPreferences.from_stored({"transactional": False}).allows(EmailType.TRANSACTIONAL)


def test_transactional_cannot_be_turned_off() -> None:
    with pytest.raises(InvalidInput, match="transactional emails cannot be turned off"):
        EmailPreferences().with_changes({EmailType.TRANSACTIONAL: False})
    with pytest.raises(InvalidInput, match="cannot be turned off"):
        parse_changes({"transactional": False})
    assert parse_changes({"transactional": True}) == {EmailType.TRANSACTIONAL: True}


def test_an_unknown_type_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_changes({"promos": False})
    assert caught.value.message == (
        "unknown email type 'promos': use one of newsletter, campaign, follow_up, announcement,"
        " transactional"
    )
    assert caught.value.field == "promos"


@pytest.mark.parametrize("value", ["false", 0, 1, None, "off", [False]])
def test_a_value_that_is_not_a_boolean_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="newsletter must be true or false"):
        parse_changes({"newsletter": value})


def test_preferences_must_be_an_object() -> None:
    with pytest.raises(InvalidInput, match="must be an object"):
        parse_changes(["newsletter"])


def test_type_names_are_read_in_any_case_and_with_hyphens() -> None:
    assert parse_email_type(" Follow-Up ") == EmailType.FOLLOW_UP
    assert email_type_or_none("nope") is None
    assert email_type_or_none(None) is None


def test_what_salesbot_sends_maps_to_a_type() -> None:
    assert email_type_of_step(0) == EmailType.CAMPAIGN
    assert email_type_of_step(None) == EmailType.CAMPAIGN
    assert email_type_of_step(1) == EmailType.FOLLOW_UP
    assert email_type_of_step(5) == EmailType.FOLLOW_UP
    assert email_type_of_step(3, answers_contact=True) == EmailType.TRANSACTIONAL


def test_turning_campaign_emails_off_turns_their_follow_ups_off_too() -> None:
    prefs = EmailPreferences().with_changes({EmailType.CAMPAIGN: False})
    assert not prefs.allows(EmailType.FOLLOW_UP)
    assert prefs.stored()["follow_up"] is True  # the contact's own choice is kept
    only_follow_ups = EmailPreferences().with_changes({EmailType.FOLLOW_UP: False})
    assert only_follow_ups.allows(EmailType.CAMPAIGN)


def test_a_refusal_says_who_and_which_type() -> None:
    prefs = EmailPreferences(frozenset({EmailType.FOLLOW_UP}))
    assert refusal("dana@a.com", EmailType.FOLLOW_UP, prefs) == (
        "dana@a.com unsubscribed from follow-up emails; nothing was sent."
    )
    assert refusal("dana@a.com", EmailType.CAMPAIGN, prefs) is None
    assert refusal("dana@a.com", EmailType.TRANSACTIONAL, prefs) is None


def test_stop_reasons_fit_an_enrollment() -> None:
    assert stop_reason(EmailType.FOLLOW_UP) == UNSUBSCRIBED_FROM_FOLLOW_UPS
    assert all(len(stop_reason(t)) <= 64 for t in EmailType)


def test_a_csv_cell_sets_types_on_and_off() -> None:
    assert parse_preference_cell("newsletter:off; Campaign:on,follow-up=no") == {
        EmailType.NEWSLETTER: False,
        EmailType.CAMPAIGN: True,
        EmailType.FOLLOW_UP: False,
    }
    assert parse_preference_cell(" ; ") == {}


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("promos:off", "unknown email type 'promos'"),
        ("newsletter", "'newsletter' is not type:on or type:off"),
        ("newsletter:maybe", "newsletter:'maybe' is neither on nor off"),
        ("transactional:off", "transactional cannot be turned off"),
        ("campaign:on;campaign:off", "campaign is both on and off"),
    ],
)
def test_a_bad_csv_cell_says_what_is_wrong(cell: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_preference_cell(cell)


@given(changes)
def test_stored_preferences_read_back_the_same(change: dict[EmailType, bool]) -> None:
    prefs = EmailPreferences().with_changes(change)
    assert EmailPreferences.from_stored(prefs.stored()) == prefs
    assert all(isinstance(v, bool) for v in prefs.stored().values())


@given(changes, changes)
def test_changes_apply_in_order_and_report_what_differs(
    first: dict[EmailType, bool], second: dict[EmailType, bool]
) -> None:
    before = EmailPreferences().with_changes(first)
    after = before.with_changes(second)
    own = {t: second.get(t, first.get(t, True)) for t in OPTIONAL_TYPES}
    for email_type in OPTIONAL_TYPES:
        expected = own[email_type]
        if email_type == EmailType.FOLLOW_UP:
            expected = expected and own[EmailType.CAMPAIGN]
        assert after.allows(email_type) == expected
    was = {t: first.get(t, True) for t in OPTIONAL_TYPES}
    assert after.changed_from(before) == {t: own[t] for t in OPTIONAL_TYPES if own[t] != was[t]}
    assert after.allows(EmailType.TRANSACTIONAL)


@given(changes)
def test_a_csv_cell_written_from_preferences_reads_back(change: dict[EmailType, bool]) -> None:
    cell = ";".join(f"{t.value}:{'on' if on else 'off'}" for t, on in change.items())
    assert parse_preference_cell(cell) == change
