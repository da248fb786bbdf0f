"""The Slack stand-in answers conversations.list, .history and .replies as Slack does, and acts
on modal submissions' acks and slash commands' acks as Slack's client does."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.slack_api import (
    DEFAULT_ADMIN_USER_ID,
    DEFAULT_BOT_USER_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_TEAM_ID,
    SlackStandIn,
)
from tests.support.slack import ServedSlack

READER = "xoxb-reader"
READ_SCOPES = frozenset(
    {
        "chat:write",
        "channels:read",
        "channels:history",
        "groups:read",
        "groups:history",
        "im:read",
        "im:history",
        "im:write",
    }
)
MODAL: dict[str, Any] = {
    "type": "modal",
    "callback_id": "edit_card",
    "title": {"type": "plain_text", "text": "Edit email"},
    "submit": {"type": "plain_text", "text": "Save"},
    "blocks": [
        {
            "type": "input",
            "block_id": "subject",
            "label": {"type": "plain_text", "text": "Subject"},
            "element": {"type": "plain_text_input", "action_id": "subject_input"},
        }
    ],
}


@pytest.fixture
def slack(served_slack: ServedSlack) -> SlackStandIn:
    served_slack.stand_in.reset()
    served_slack.stand_in.add_user("U0DANA", "dana", "dana@pinnaclelending.com")
    served_slack.stand_in.add_token(READER, scopes=READ_SCOPES)
    return served_slack.stand_in


@pytest.fixture
def client(slack: SlackStandIn, served_slack: ServedSlack) -> WebClient:
    return served_slack.client(token=READER)


def slack_error(raised: pytest.ExceptionInfo[SlackApiError]) -> Any:
    return raised.value.response["error"]


def post(client: WebClient, text: str, **extra: Any) -> str:
    return str(client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text=text, **extra)["ts"])


# ---- conversations.history ---------------------------------------------------------------------


def test_history_lists_a_channels_messages_newest_first_without_thread_replies(
    client: WebClient,
) -> None:
    first = post(client, "first")
    post(client, "a reply", thread_ts=first)
    post(client, "a reply also in the channel", thread_ts=first, reply_broadcast=True)
    post(client, "second")

    history = client.conversations_history(channel=DEFAULT_CHANNEL_ID)

    assert [m["text"] for m in history["messages"]] == [
        "second",
        "a reply also in the channel",
        "first",
    ]
    assert history["has_more"] is False
    assert history["response_metadata"] == {"next_cursor": ""}


def test_a_threads_parent_in_history_carries_its_reply_count_and_latest_reply(
    client: WebClient,
) -> None:
    parent = post(client, "Dana replied")
    post(client, "one", thread_ts=parent)
    last = post(client, "two", thread_ts=parent)

    (message,) = client.conversations_history(channel=DEFAULT_CHANNEL_ID)["messages"]

    assert {k: message[k] for k in ("thread_ts", "reply_count", "reply_users", "latest_reply")} == {
        "thread_ts": parent,
        "reply_count": 2,
        "reply_users": [DEFAULT_BOT_USER_ID],
        "latest_reply": last,
    }


def test_history_pages_with_limit_and_cursor_until_the_cursor_is_empty(client: WebClient) -> None:
    for n in range(5):
        post(client, f"m{n}")

    pages: list[list[str]] = []
    cursor = None
    while True:
        page = client.conversations_history(channel=DEFAULT_CHANNEL_ID, limit=2, cursor=cursor)
        pages.append([m["text"] for m in page["messages"]])
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] is bool(cursor)
        if not cursor:
            break

    assert pages == [["m4", "m3"], ["m2", "m1"], ["m0"]]


def test_history_between_oldest_and_latest_leaves_both_ends_out_unless_inclusive(
    client: WebClient,
) -> None:
    stamps = [post(client, f"m{n}") for n in range(4)]

    between = client.conversations_history(
        channel=DEFAULT_CHANNEL_ID, oldest=stamps[0], latest=stamps[3]
    )
    inclusive = client.conversations_history(
        channel=DEFAULT_CHANNEL_ID, oldest=stamps[0], latest=stamps[3], inclusive=True
    )

    assert [m["text"] for m in between["messages"]] == ["m2", "m1"]
    assert [m["text"] for m in inclusive["messages"]] == ["m3", "m2", "m1", "m0"]


def test_a_malformed_cursor_is_refused_with_invalid_cursor(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.conversations_history(channel=DEFAULT_CHANNEL_ID, cursor="not a cursor")

    assert slack_error(refused) == "invalid_cursor"


def test_history_without_the_history_scope_is_refused_with_missing_scope(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    bot = served_slack.client()  # the default token: the manifest asks im:history only

    with pytest.raises(SlackApiError) as refused:
        bot.conversations_history(channel=DEFAULT_CHANNEL_ID)

    assert refused.value.response["needed"] == "channels:history"
    dm = slack.dm_channel_id(DEFAULT_ADMIN_USER_ID)
    assert bot.conversations_history(channel=dm)["messages"] == []


def test_history_of_a_channel_the_bot_is_not_in_is_refused_with_not_in_channel(
    slack: SlackStandIn, client: WebClient
) -> None:
    slack.add_channel("C0ELSEWHERE", "elsewhere", is_member=False)

    with pytest.raises(SlackApiError) as refused:
        client.conversations_history(channel="C0ELSEWHERE")

    assert slack_error(refused) == "not_in_channel"


def test_history_of_an_unknown_channel_is_refused_with_channel_not_found(
    client: WebClient,
) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.conversations_history(channel="C0NOWHERE")

    assert slack_error(refused) == "channel_not_found"


# ---- conversations.replies ---------------------------------------------------------------------


def test_replies_start_with_the_parent_and_follow_in_order(client: WebClient) -> None:
    parent = post(client, "Dana replied")
    post(client, "elsewhere")
    post(client, "one", thread_ts=parent)
    post(client, "two", thread_ts=parent)

    thread = client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts=parent)

    assert [(m["text"], m.get("parent_user_id")) for m in thread["messages"]] == [
        ("Dana replied", None),
        ("one", DEFAULT_BOT_USER_ID),
        ("two", DEFAULT_BOT_USER_ID),
    ]


def test_replies_named_by_a_reply_give_its_whole_thread(client: WebClient) -> None:
    parent = post(client, "Dana replied")
    reply = post(client, "one", thread_ts=parent)

    thread = client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts=reply)

    assert [m["ts"] for m in thread["messages"]] == [parent, reply]


def test_every_page_of_replies_starts_with_the_parent(client: WebClient) -> None:
    parent = post(client, "Dana replied")
    for n in range(3):
        post(client, f"r{n}", thread_ts=parent)

    first = client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts=parent, limit=2)
    second = client.conversations_replies(
        channel=DEFAULT_CHANNEL_ID,
        ts=parent,
        limit=2,
        cursor=first["response_metadata"]["next_cursor"],
    )

    assert [m["text"] for m in first["messages"]] == ["Dana replied", "r0", "r1"]
    assert first["has_more"] is True
    assert [m["text"] for m in second["messages"]] == ["Dana replied", "r2"]
    assert second["has_more"] is False


def test_replies_of_an_unknown_message_are_refused_with_thread_not_found(
    client: WebClient,
) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts="1700000000.000001")

    assert slack_error(refused) == "thread_not_found"


# ---- conversations.list ------------------------------------------------------------------------


def test_list_gives_public_channels_by_default_and_the_types_asked(
    slack: SlackStandIn, client: WebClient
) -> None:
    slack.add_channel("C0DEALS", "deals")
    slack.add_channel("C0SECRET", "secret", is_private=True, is_member=False)
    client.conversations_open(users="U0DANA")

    public = client.conversations_list()
    everything = client.conversations_list(types="public_channel,private_channel,im")

    assert [c["id"] for c in public["channels"]] == [DEFAULT_CHANNEL_ID, "C0DEALS"]
    assert [c["id"] for c in everything["channels"]] == [DEFAULT_CHANNEL_ID, "C0DEALS", "D0DANA"]
    assert public["response_metadata"] == {"next_cursor": ""}


def test_list_pages_with_limit_and_cursor(slack: SlackStandIn, client: WebClient) -> None:
    for n in range(3):
        slack.add_channel(f"C0EXTRA{n}", f"extra-{n}")

    first = client.conversations_list(limit=3)
    second = client.conversations_list(limit=3, cursor=first["response_metadata"]["next_cursor"])

    assert len(first["channels"]) == 3
    assert [c["name"] for c in second["channels"]] == ["extra-2"]
    assert second["response_metadata"]["next_cursor"] == ""


def test_list_of_an_unknown_type_is_refused_with_invalid_types(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.conversations_list(types="public_channel,rooms")

    assert slack_error(refused) == "invalid_types"


def test_list_of_private_channels_needs_groups_read(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    slack.add_token("xoxb-public-only", scopes=frozenset({"channels:read"}))

    with pytest.raises(SlackApiError) as refused:
        served_slack.client(token="xoxb-public-only").conversations_list(types="private_channel")

    assert refused.value.response["needed"] == "groups:read"


# ---- what Slack's client does with the app's acks ------------------------------------------


def open_modal(slack: SlackStandIn, client: WebClient) -> str:
    trigger = slack.issue_trigger_id(user_id=DEFAULT_ADMIN_USER_ID)
    return str(client.views_open(trigger_id=trigger, view=MODAL)["view"]["id"])


def test_an_empty_ack_of_a_submission_closes_the_modal(
    slack: SlackStandIn, client: WebClient
) -> None:
    view_id = open_modal(slack, client)

    errors = slack.answer_view_submission(view_id, None)

    assert errors == {}
    assert slack.open_modals(DEFAULT_ADMIN_USER_ID) == []
    assert slack.view(view_id).closed is True


def test_errors_in_the_ack_keep_the_modal_open_and_are_returned(
    slack: SlackStandIn, client: WebClient
) -> None:
    view_id = open_modal(slack, client)

    errors = slack.answer_view_submission(
        view_id, {"response_action": "errors", "errors": {"subject": "Say something"}}
    )

    assert errors == {"subject": "Say something"}
    assert [v.id for v in slack.open_modals(DEFAULT_ADMIN_USER_ID)] == [view_id]


def test_update_in_the_ack_replaces_the_modal_and_push_stacks_one(
    slack: SlackStandIn, client: WebClient
) -> None:
    view_id = open_modal(slack, client)
    updated = {**MODAL, "title": {"type": "plain_text", "text": "Saved"}}

    slack.answer_view_submission(view_id, {"response_action": "update", "view": updated})
    slack.answer_view_submission(view_id, {"response_action": "push", "view": MODAL})

    stack = slack.open_modals(DEFAULT_ADMIN_USER_ID)
    assert [(v.title, v.previous_view_id) for v in stack] == [
        ("Saved", None),
        ("Edit email", view_id),
    ]
    slack.answer_view_submission(stack[-1].id, {"response_action": "clear"})
    assert slack.open_modals(DEFAULT_ADMIN_USER_ID) == []


def test_a_commands_text_ack_shows_to_its_user_only_and_in_channel_posts(
    slack: SlackStandIn,
) -> None:
    slack.answer_command(
        channel=DEFAULT_CHANNEL_ID, user=DEFAULT_ADMIN_USER_ID, body='{"text": "Launching…"}'
    )
    slack.answer_command(
        channel=DEFAULT_CHANNEL_ID,
        user=DEFAULT_ADMIN_USER_ID,
        body='{"response_type": "in_channel", "text": "Everyone sees this"}',
    )
    slack.answer_command(channel=DEFAULT_CHANNEL_ID, user=DEFAULT_ADMIN_USER_ID, body="")

    (ephemeral,) = slack.ephemerals(DEFAULT_CHANNEL_ID)
    assert (ephemeral.user, ephemeral.text) == (DEFAULT_ADMIN_USER_ID, "Launching…")
    assert [m.text for m in slack.messages(DEFAULT_CHANNEL_ID)] == ["Everyone sees this"]
    assert slack.messages(DEFAULT_CHANNEL_ID)[0].team_id == DEFAULT_TEAM_ID
