"""The Block Kit of a newsletter issue's preview card and its Edit form."""

from __future__ import annotations

import json
from dataclasses import replace

from domain.newsletters import IssueCard, IssueStatus
from handlers.slack.ids import ActionId
from handlers.slack.newsletter_blocks import issue_card_message, parse_issue_value

CARD = IssueCard(
    issue_id=7,
    newsletter_name="Lender Update",
    title="December",
    status=IssueStatus.IN_REVIEW,
    fingerprint="abc123",
    audience_count=5_120,
    sample_email="dana@pinnaclelending.com",
    sample_subject="Lender Update: <!channel> *rates*",
    sample_text="Hi Dana, <https://evil.example|click> & more",
    plan_line="5,120 emails from 2 mailboxes, 400/day, finishes Dec 20 ≈13:58 UTC",
)


def test_the_card_shows_audience_plan_and_escaped_content_with_three_buttons() -> None:
    text, blocks = issue_card_message(CARD)

    assert text == "Newsletter Lender Update: December (in_review)"
    assert blocks[0]["text"]["text"] == "📰  *Lender Update* · December    `in_review`"
    assert blocks[1]["text"]["text"] == (
        "*Audience* 5,120 subscribers · sample: dana@pinnaclelending.com\n"
        "*Plan* 5,120 emails from 2 mailboxes, 400/day, finishes Dec 20 ≈13:58 UTC"
    )
    shown = json.dumps(blocks)
    assert "<!channel>" not in shown
    assert "<https://evil.example|click>" not in shown
    assert "&lt;https://evil.example|click&gt; &amp; more" in shown
    actions = blocks[-1]["elements"]
    assert [b["action_id"] for b in actions] == [
        ActionId.NEWSLETTER_APPROVE,
        ActionId.NEWSLETTER_EDIT,
        ActionId.NEWSLETTER_REJECT,
    ]
    assert [b["text"]["text"] for b in actions] == ["Approve & schedule", "Edit", "Reject"]
    assert parse_issue_value(actions[0]["value"]) == (7, "abc123")


def test_a_decided_card_has_its_note_and_no_buttons() -> None:
    for status in (IssueStatus.SENT, IssueStatus.CANCELLED, IssueStatus.REJECTED):
        decided = replace(CARD, status=status, note="📬 Sent to 5,120 subscribers")
        _, blocks = issue_card_message(decided)

        assert all(b["type"] != "actions" for b in blocks)
        assert blocks[-1] == {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "📬 Sent to 5,120 subscribers"}],
        }


def test_a_scheduled_or_sending_card_has_only_cancel_sending_behind_a_confirm_dialog() -> None:
    for status in (IssueStatus.SCHEDULED, IssueStatus.SENDING):
        on_its_way = replace(CARD, status=status, note="📅 Scheduled: 5,120 emails")
        _, blocks = issue_card_message(on_its_way)

        assert blocks[-2] == {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "📅 Scheduled: 5,120 emails"}],
        }
        assert blocks[-1]["type"] == "actions"
        (button,) = blocks[-1]["elements"]
        assert button["action_id"] == ActionId.NEWSLETTER_CANCEL
        assert button["text"]["text"] == "Cancel sending"
        assert button["style"] == "danger"
        assert parse_issue_value(button["value"]) == (7, "abc123")
        assert button["confirm"] == {
            "title": {"type": "plain_text", "text": "Cancel sending?", "emoji": True},
            "text": {
                "type": "mrkdwn",
                "text": "No more emails of this issue will be sent: those still queued are"
                " withdrawn. Those already sent (or on their way) are not recalled.",
            },
            "confirm": {"type": "plain_text", "text": "Cancel sending", "emoji": True},
            "deny": {"type": "plain_text", "text": "Keep sending", "emoji": True},
            "style": "danger",
        }
