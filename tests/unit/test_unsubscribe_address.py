"""The List-Unsubscribe plus-address: built from a mailbox and a token, read back the same."""

from __future__ import annotations

import pytest

from domain.unsubscribe_address import build_unsubscribe_address, parse_unsubscribe_address

MAILBOXES = frozenset({"replies@appraisalfirm.example", "sam@appraisalfirm.example"})


def test_the_address_is_the_mailbox_with_a_plus_tag_carrying_the_token() -> None:
    address = build_unsubscribe_address("replies@appraisalfirm.example", "c3R1ZmY.sig_-9")

    assert address == "replies+unsub-c3R1ZmY.sig_-9@appraisalfirm.example"


def test_the_token_is_read_back_from_the_address_it_was_built_into() -> None:
    address = build_unsubscribe_address("sam@appraisalfirm.example", "AbC123_-x")

    assert parse_unsubscribe_address(address, mailboxes=MAILBOXES) == "AbC123_-x"


def test_the_mailbox_and_tag_are_matched_without_regard_to_case_and_the_token_keeps_its_case() -> (
    None
):
    token = parse_unsubscribe_address(
        "<Replies+UNSUB-AbC@AppraisalFirm.Example>", mailboxes=MAILBOXES
    )

    assert token == "AbC"


@pytest.mark.parametrize(
    "address",
    [
        "replies@appraisalfirm.example",  # no tag
        "replies+news-AbC@appraisalfirm.example",  # another tag
        "replies+unsub-AbC@otherfirm.example",  # not our mailbox
        "dana+unsub-AbC@appraisalfirm.example",  # not one of our mailboxes
        "replies+unsub-@appraisalfirm.example",  # no token
        "replies+unsub-a..b@appraisalfirm.example",  # not a token we build
        "not an address",
        "",
    ],
)
def test_other_addresses_carry_no_unsubscribe_token(address: str) -> None:
    assert parse_unsubscribe_address(address, mailboxes=MAILBOXES) is None


@pytest.mark.parametrize(
    ("mailbox", "token"),
    [
        ("replies@appraisalfirm.example", "has space"),
        ("replies@appraisalfirm.example", "a+b"),
        ("replies@appraisalfirm.example", ""),
        ("replies+sales@appraisalfirm.example", "AbC"),  # already plus-tagged
        ("no-at-sign", "AbC"),
    ],
)
def test_an_address_that_cannot_carry_the_token_is_refused(mailbox: str, token: str) -> None:
    with pytest.raises(ValueError, match="token|mailbox"):
        build_unsubscribe_address(mailbox, token)


def test_a_token_that_makes_the_local_part_longer_than_64_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 64"):
        build_unsubscribe_address("replies@appraisalfirm.example", "x" * 60)
