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
    scheduled = replace(CARD, status=IssueStatus.SCHEDULED, note="📅 Scheduled: 5,120 emails")
    _, blocks = issue_card_message(scheduled)

    assert all(b["type"] != "actions" for b in blocks)
    assert blocks[-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "📅 Scheduled: 5,120 emails"}],
    }
