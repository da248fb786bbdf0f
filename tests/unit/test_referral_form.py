"""The form that asks a rep for a referral's address: its Block Kit, and the addresses it
refuses before it closes."""

from __future__ import annotations

import pytest

from domain.outreach import Referral
from handlers.slack.ids import ActionId, BlockId, CallbackId
from handlers.slack.referrals import address_error, referral_email_modal


def referral(**changes: object) -> Referral:
    values: dict[str, object] = {
        "card_id": 41,
        "email": None,
        "name": "Kyle Brennan",
        "role": None,
        "contact_id": None,
        "campaign_id": 5,
        "campaign_name": "Q4 <win-back>",
        "enrolled_job_id": None,
        "words": "my friend Kyle Brennan at Riverbend Mortgage",
        "referrer": "Colleen & co",
    }
    values.update(changes)
    return Referral(**values)  # type: ignore[arg-type]


def test_the_form_names_who_pointed_to_whom_and_asks_for_the_address() -> None:
    assert referral_email_modal(referral()) == {
        "type": "modal",
        "callback_id": CallbackId.REFERRAL_EMAIL,
        "private_metadata": '{"card":41}',
        "title": {"type": "plain_text", "text": "Enroll a referral", "emoji": True},
        "submit": {"type": "plain_text", "text": "Enroll", "emoji": True},
        "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "Colleen &amp; co pointed you to *Kyle Brennan* but wrote no email "
                    "address. Type it and Salesbot enrolls them in “Q4 &lt;win-back&gt;” and "
                    "drafts their first email for your review.",
                },
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "> my friend Kyle Brennan at Riverbend Mortgage"}
                ],
            },
            {
                "type": "input",
                "block_id": BlockId.EMAIL,
                "label": {"type": "plain_text", "text": "Email address", "emoji": True},
                "element": {
                    "type": "email_text_input",
                    "action_id": ActionId.EMAIL_INPUT,
                    "placeholder": {
                        "type": "plain_text",
                        "text": "karen@lender.com",
                        "emoji": True,
                    },
                },
            },
            {
                "type": "input",
                "block_id": BlockId.NAME,
                "optional": True,
                "label": {"type": "plain_text", "text": "Name", "emoji": True},
                "element": {
                    "type": "plain_text_input",
                    "action_id": ActionId.NAME_INPUT,
                    "max_length": 120,
                    "initial_value": "Kyle Brennan",
                },
            },
        ],
    }


def test_a_referral_without_a_name_or_words_asks_for_both_fields_empty() -> None:
    form = referral_email_modal(referral(name=None, words="", campaign_name=None))

    assert [b["type"] for b in form["blocks"]] == ["section", "input", "input"]
    assert "pointed you to someone" in form["blocks"][0]["text"]["text"]
    assert "in the campaign and" in form["blocks"][0]["text"]["text"]
    assert "initial_value" not in form["blocks"][2]["element"]


@pytest.mark.parametrize("typed", ["kyle at riverbend", "kyle@", "@riverbend.com", "", "a@b"])
def test_the_form_refuses_what_is_not_an_address(typed: str) -> None:
    error = address_error(typed)
    assert error is not None
    assert len(error) <= 150


def test_the_form_accepts_an_address() -> None:
    assert address_error(" Kyle.Brennan@riverbend.example.com ") is None
