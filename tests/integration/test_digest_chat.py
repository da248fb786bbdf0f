"""The digest's Slack side against the Slack stand-in: the chart uploaded without a channel,
a message whose image Slack has not processed yet retried until it takes it, and Slack's
refusals turned into errors that say whether trying again helps."""

from __future__ import annotations

import pytest

from domain.errors import ExternalServiceError
from domain.reply_routing import ChannelUnavailable
from jobs.digest import SlackDigestChat
from sandbox.slack_api import DEFAULT_CHANNEL_ID
from tests.support.slack import ServedSlack

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2048


@pytest.fixture
def chat(served_slack: ServedSlack) -> SlackDigestChat:
    served_slack.stand_in.reset()
    client = served_slack.client()
    return SlackDigestChat(lambda _org_id: client)


def _image(file_id: str) -> list[dict[str, object]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Engagement digest"}},
        {"type": "image", "slack_file": {"id": file_id}, "alt_text": "A chart"},
    ]


def test_a_chart_is_uploaded_to_no_channel_and_posted_by_its_image_block(
    chat: SlackDigestChat, served_slack: ServedSlack
) -> None:
    slack = served_slack.stand_in
    file_id = chat.upload_png(1, PNG, filename="engagement-30d.png", title="Digest", alt="A chart")
    ts = chat.post(1, DEFAULT_CHANNEL_ID, text="Engagement digest", blocks=_image(file_id))
    (uploaded,) = slack.uploaded_files
    assert (uploaded.id, uploaded.content, uploaded.channels) == (file_id, PNG, ())
    assert uploaded.alt_txt == "A chart"
    (message,) = slack.messages(DEFAULT_CHANNEL_ID)
    assert message.ts == ts
    assert message.files is None


def test_a_message_whose_file_is_not_processed_yet_is_posted_once_slack_takes_it(
    chat: SlackDigestChat, served_slack: ServedSlack
) -> None:
    slack = served_slack.stand_in
    file_id = chat.upload_png(1, PNG, filename="engagement-30d.png", title="Digest", alt="A chart")
    slack.fail_next("chat.postMessage", "invalid_blocks", times=2)
    chat.post(1, DEFAULT_CHANNEL_ID, text="Engagement digest", blocks=_image(file_id))
    assert len(slack.calls("chat.postMessage")) == 3
    assert len(slack.messages(DEFAULT_CHANNEL_ID)) == 1


def test_invalid_blocks_without_an_image_are_not_retried(
    chat: SlackDigestChat, served_slack: ServedSlack
) -> None:
    slack = served_slack.stand_in
    slack.fail_next("chat.postMessage", "invalid_blocks")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]
    with pytest.raises(ExternalServiceError):
        chat.post(1, DEFAULT_CHANNEL_ID, text="x", blocks=blocks)
    assert len(slack.calls("chat.postMessage")) == 1


def test_slacks_refusals_say_whether_trying_again_helps(
    chat: SlackDigestChat, served_slack: ServedSlack
) -> None:
    slack = served_slack.stand_in
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]
    slack.fail_next("chat.postMessage", "not_in_channel")
    with pytest.raises(ChannelUnavailable) as refused:
        chat.post(1, DEFAULT_CHANNEL_ID, text="x", blocks=blocks)
    assert not refused.value.retryable
    assert "invite it with /invite @salesbot" in refused.value.message
    slack.fail_next("chat.postMessage", "internal_error")
    with pytest.raises(ExternalServiceError) as failed:
        chat.post(1, DEFAULT_CHANNEL_ID, text="x", blocks=blocks)
    assert failed.value.retryable
    slack.fail_next("files.getUploadURLExternal", "invalid_auth")
    with pytest.raises(ExternalServiceError) as revoked:
        chat.upload_png(1, PNG, filename="engagement-30d.png", title="Digest", alt="A chart")
    assert not revoked.value.retryable
