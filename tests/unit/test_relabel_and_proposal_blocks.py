"""The re-label modal and the rule proposal DM: pure Block Kit builders, and what the
modal's ack refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from domain.classification import Category, Intent, Sentiment
from domain.corrections import LabelSet, ProposalStatus, RelabelOutcome, RuleProposalView
from domain.rules import RuleType
from handlers.slack import proposals
from handlers.slack.ids import ActionId, BlockId, CallbackId
from handlers.slack.relabel import ack_relabel, chosen, outcome_text, relabel_modal
from storage.chat_notices import NOTICE_EVENT, NOTICE_FUNCTION, notice_body

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _proposal(**changes: Any) -> RuleProposalView:
    values: dict[str, Any] = {
        "id": 7,
        "rule_type": RuleType.SENDER_DOMAIN,
        "pattern": "pinnacle.example",
        "category": Category.INFORMATION,
        "corrections": 3,
        "status": ProposalStatus.OPEN,
        "rule_id": None,
        "decided_by": None,
        "decided_at": None,
        "created_at": AT,
        "updated_at": AT,
    }
    values.update(changes)
    return RuleProposalView(**values)


def _select(value: str) -> dict[str, Any]:
    label = value.replace("_", " ") if value.islower() else value
    return {"text": {"type": "plain_text", "text": label}, "value": value}


def test_the_relabel_modal_offers_every_label_and_starts_from_the_message_s() -> None:
    labels = LabelSet(
        category=Category.REMOVE, intent=Intent.UNSUBSCRIBE, sentiment=Sentiment.NEGATIVE
    )

    view = relabel_modal(12, 345, labels)

    assert view["callback_id"] == CallbackId.RELABEL_CARD
    assert json.loads(view["private_metadata"]) == {"card": 12, "email": 345}
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert list(inputs) == [BlockId.CATEGORY, BlockId.INTENT, BlockId.SENTIMENT]
    assert [e["action_id"] for e in inputs.values()] == [
        ActionId.CATEGORY_INPUT,
        ActionId.INTENT_INPUT,
        ActionId.SENTIMENT_INPUT,
    ]
    assert {e["type"] for e in inputs.values()} == {"static_select"}
    assert [o["value"] for o in inputs[BlockId.CATEGORY]["options"]] == [c.value for c in Category]
    assert [o["value"] for o in inputs[BlockId.INTENT]["options"]] == [i.value for i in Intent]
    assert inputs[BlockId.CATEGORY]["initial_option"] == _select("REMOVE")
    assert inputs[BlockId.INTENT]["initial_option"] == _select("unsubscribe")
    assert inputs[BlockId.SENTIMENT]["initial_option"] == _select("negative")


def _state(**values: str) -> dict[str, Any]:
    fields = {
        "category": ActionId.CATEGORY_INPUT,
        "intent": ActionId.INTENT_INPUT,
        "sentiment": ActionId.SENTIMENT_INPUT,
    }
    return {
        "state": {
            "values": {
                block: {fields[block].value: {"selected_option": {"value": value}}}
                for block, value in values.items()
            }
        }
    }


def test_the_modal_s_ack_refuses_a_value_outside_the_lists() -> None:
    answers: list[dict[str, Any]] = []

    def ack(**kwargs: Any) -> None:
        answers.append(kwargs)

    ack_relabel(ack, _state(category="INFORMATION", intent="none", sentiment="neutral"))  # type: ignore[arg-type]
    ack_relabel(ack, _state(category="SPAM", intent="none", sentiment="grumpy"))  # type: ignore[arg-type]

    assert answers[0] == {}
    assert answers[1] == {
        "response_action": "errors",
        "errors": {
            "category": "Category 'SPAM' is not one of the choices.",
            "sentiment": "Sentiment 'grumpy' is not one of the choices.",
        },
    }
    assert chosen(_state(intent="referral")) == {
        "category": None,
        "intent": "referral",
        "sentiment": None,
    }


def test_a_proposal_dm_has_accept_and_dismiss_naming_the_proposal() -> None:
    text, blocks = proposals.proposal_message(_proposal())

    assert text == "Rule proposed: file mail from pinnacle.example as INFORMATION"
    assert blocks[0]["text"]["text"].startswith(
        "*Rule proposed* from your reps' corrections: they re-labelled 3 emails from anyone "
        "at `pinnacle.example` as *INFORMATION*."
    )
    buttons = blocks[1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (ActionId.ACCEPT_RULE_PROPOSAL, "7"),
        (ActionId.DISMISS_RULE_PROPOSAL, "7"),
    ]


def test_a_decided_proposal_says_who_decided_and_has_no_buttons() -> None:
    accepted = _proposal(status=ProposalStatus.ACCEPTED, rule_id=41, decided_by=2)
    dismissed = _proposal(status=ProposalStatus.DISMISSED, decided_by=2)

    text, blocks = proposals.decided_message(accepted, by_slack_id="U0ANA0001")
    assert text == (
        "✅ Accepted by <@U0ANA0001>: rule #41 files mail from anyone at pinnacle.example "
        "→ INFORMATION."
    )
    assert [b["type"] for b in blocks] == ["section"]
    text, _ = proposals.decided_message(dismissed, by_slack_id=None)
    assert text == (
        "Dismissed: mail from anyone at pinnacle.example → INFORMATION will not be proposed again."
    )


def test_a_queued_notice_names_the_listener_that_sends_it() -> None:
    assert proposals.send_notice.__name__ == NOTICE_FUNCTION
    body = json.loads(notice_body("T1", 3, "rule_proposal", {"proposal_id": 7}))
    assert body == {
        "type": "event_callback",
        "team_id": "T1",
        "event": {
            "type": NOTICE_EVENT,
            "notice": "rule_proposal",
            "org_id": 3,
            "data": {"proposal_id": 7},
        },
    }


def test_a_sender_address_that_mentions_the_channel_is_shown_disarmed() -> None:
    hostile = '"<!channel>"@evil.example'
    proposal = _proposal(rule_type=RuleType.SENDER_EMAIL, pattern=hostile)
    accepted = _proposal(
        rule_type=RuleType.SENDER_EMAIL, pattern=hostile, status=ProposalStatus.ACCEPTED, rule_id=4
    )
    outcome = RelabelOutcome(
        inbound_email_id=5,
        card_id=None,
        changed=True,
        correction_id=1,
        before=LabelSet(
            category=Category.REMOVE, intent=Intent.UNSUBSCRIBE, sentiment=Sentiment.NEGATIVE
        ),
        after=LabelSet(
            category=Category.INFORMATION, intent=Intent.NONE, sentiment=Sentiment.NEUTRAL
        ),
        effects=["labels changed", f"no opt-out: {hostile} is not one of our contacts"],
    )

    shown = [
        json.dumps(proposals.proposal_message(proposal)),
        json.dumps(proposals.decided_message(accepted, by_slack_id=None)),
        outcome_text(outcome),
    ]

    for text in shown:
        assert "<!channel>" not in text
        assert "&lt;" in text
