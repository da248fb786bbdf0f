"""The Slack Web API stand-in answers the official clients (slack_sdk, Bolt) as Slack does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from slack_bolt import App, BoltRequest
from slack_bolt.context.ack import Ack
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from sandbox.slack_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_BOT_USER_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TEAM_ID,
    SlackStandIn,
)
from tests.support.slack import (
    ServedSlack,
    signed_headers,
    slash_command_body,
)

SIGNING_SECRET = "sandbox-signing-secret"
MODAL: dict[str, Any] = {
    "type": "modal",
    "callback_id": "edit_draft",
    "title": {"type": "plain_text", "text": "Edit draft"},
    "submit": {"type": "plain_text", "text": "Send"},
    "blocks": [
        {
            "type": "input",
            "block_id": "body",
            "label": {"type": "plain_text", "text": "Body"},
            "element": {"type": "plain_text_input", "action_id": "body", "multiline": True},
        }
    ],
}
CARD_BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Step 2 of 4* · Q4 lender win-back"}},
    {
        "type": "actions",
        "block_id": "card_actions",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "text": {"type": "plain_text", "text": "Approve & send"},
                "value": "card-1:fp-abc",
            },
            {
                "type": "button",
                "action_id": "reject",
                "text": {"type": "plain_text", "text": "Reject"},
                "value": "card-1",
            },
        ],
    },
]


@pytest.fixture
def slack(served_slack: ServedSlack) -> SlackStandIn:
    served_slack.stand_in.reset()
    served_slack.stand_in.add_user("U0DANA", "dana", "dana@pinnaclelending.com")
    return served_slack.stand_in


@pytest.fixture
def client(slack: SlackStandIn, served_slack: ServedSlack) -> WebClient:
    return served_slack.client()


def slack_error(raised: pytest.ExceptionInfo[SlackApiError]) -> Any:
    return raised.value.response["error"]


# ---- messages ----------------------------------------------------------------------------------


def test_posted_card_reads_back_with_its_update_applied(
    slack: SlackStandIn, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="Draft", blocks=CARD_BLOCKS)
    done = [{"type": "context", "elements": [{"type": "mrkdwn", "text": "✅ Sent by @maria"}]}]

    updated = client.chat_update(
        channel=posted["channel"], ts=posted["ts"], text="Sent", blocks=done
    )

    assert updated["ts"] == posted["ts"]
    assert updated["message"]["blocks"] == done
    message = slack.last_message(DEFAULT_CHANNEL_ID)
    assert (message.ts, message.text, message.blocks, message.user, message.edit_count) == (
        posted["ts"],
        "Sent",
        done,
        DEFAULT_BOT_USER_ID,
        1,
    )
    assert len(slack.messages(DEFAULT_CHANNEL_ID)) == 1


def test_message_ts_values_are_unique_and_increasing(client: WebClient) -> None:
    stamps = [
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text=str(n))["ts"] for n in range(3)
    ]

    assert len(set(stamps)) == 3
    assert stamps == sorted(stamps, key=float)
    assert all(len(ts.split(".")[1]) == 6 for ts in stamps)


def test_thread_reply_is_read_back_with_its_parent(slack: SlackStandIn, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="Dana replied")
    client.chat_postMessage(
        channel=DEFAULT_CHANNEL_ID, text="Suggested answer", thread_ts=parent["ts"]
    )
    client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="Unrelated")

    thread = slack.messages(DEFAULT_CHANNEL_ID, thread_ts=parent["ts"])

    assert [(m.text, m.thread_ts) for m in thread] == [
        ("Dana replied", None),
        ("Suggested answer", parent["ts"]),
    ]


def test_update_of_an_unknown_message_is_refused_with_message_not_found(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.chat_update(channel=DEFAULT_CHANNEL_ID, ts="1700000000.000100", text="x")

    assert slack_error(refused) == "message_not_found"


def test_deleted_message_is_gone(slack: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="oops")

    client.chat_delete(channel=DEFAULT_CHANNEL_ID, ts=posted["ts"])

    assert slack.messages(DEFAULT_CHANNEL_ID) == []


def test_post_to_an_unknown_channel_is_refused_with_channel_not_found(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C0NOWHERE", text="hello")

    assert slack_error(refused) == "channel_not_found"


def test_message_without_text_or_blocks_is_refused_with_no_text(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.api_call("chat.postMessage", json={"channel": DEFAULT_CHANNEL_ID})

    assert slack_error(refused) == "no_text"


def test_fifty_one_blocks_are_refused_with_invalid_blocks(client: WebClient) -> None:
    blocks = [{"type": "divider"} for _ in range(51)]

    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="long", blocks=blocks)

    assert slack_error(refused) == "invalid_blocks"
    assert refused.value.response["response_metadata"]["messages"] == [
        "[ERROR] no more than 50 items allowed [json-pointer:/blocks]"
    ]


def test_block_without_a_type_is_refused_with_invalid_blocks(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x", blocks=[{"text": "no type"}])

    assert slack_error(refused) == "invalid_blocks"


def test_text_over_forty_thousand_characters_is_refused_with_msg_too_long(
    client: WebClient,
) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x" * 40_001)

    assert slack_error(refused) == "msg_too_long"


def test_form_encoded_blocks_sent_as_json_text_are_parsed(
    slack: SlackStandIn, client: WebClient
) -> None:
    form = {"channel": DEFAULT_CHANNEL_ID, "text": "Draft", "blocks": json.dumps(CARD_BLOCKS)}

    client.api_call("chat.postMessage", params=form)

    assert slack.last_message(DEFAULT_CHANNEL_ID).blocks == CARD_BLOCKS
    assert slack.calls("chat.postMessage")[0].params["blocks"] == CARD_BLOCKS


def test_form_text_that_is_not_json_is_refused_with_invalid_blocks_format(
    client: WebClient,
) -> None:
    form = {"channel": DEFAULT_CHANNEL_ID, "text": "Draft", "blocks": "[{not json"}

    with pytest.raises(SlackApiError) as refused:
        client.api_call("chat.postMessage", params=form)

    assert slack_error(refused) == "invalid_blocks_format"


def test_message_to_a_user_id_lands_in_the_bots_dm_with_them(
    slack: SlackStandIn, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel="U0DANA", text="Your digest")

    assert posted["channel"] == slack.dm_channel_id("U0DANA")
    assert [m.text for m in slack.messages("U0DANA")] == ["Your digest"]


def test_dm_id_of_a_member_is_usable_before_conversations_open(
    slack: SlackStandIn, client: WebClient
) -> None:
    client.chat_postMessage(channel=slack.dm_channel_id("U0DANA"), text="Welcome to Salesbot")

    assert [m.text for m in slack.messages("U0DANA")] == ["Welcome to Salesbot"]


# ---- ephemeral ---------------------------------------------------------------------------------


def test_ephemeral_message_is_recorded_for_its_user_only(
    slack: SlackStandIn, client: WebClient
) -> None:
    answer = client.chat_postEphemeral(
        channel=DEFAULT_CHANNEL_ID, user="U0DANA", text="Gmail daily cap reached; retry at 09:00"
    )

    shown = slack.ephemerals(DEFAULT_CHANNEL_ID, "U0DANA")
    assert [(e.message_ts, e.text) for e in shown] == [
        (answer["message_ts"], "Gmail daily cap reached; retry at 09:00")
    ]
    assert slack.ephemerals(DEFAULT_CHANNEL_ID, DEFAULT_BOT_USER_ID) == []
    assert slack.messages(DEFAULT_CHANNEL_ID) == []


def test_ephemeral_to_a_user_outside_the_channel_is_refused(
    slack: SlackStandIn, client: WebClient
) -> None:
    slack.add_channel("C0DEALS", "deals", members=("U0SANDBOXADM",))

    with pytest.raises(SlackApiError) as refused:
        client.chat_postEphemeral(channel="C0DEALS", user="U0DANA", text="hi")

    assert slack_error(refused) == "user_not_in_channel"


# ---- views -------------------------------------------------------------------------------------


def test_modal_opens_with_a_view_id_and_hash(slack: SlackStandIn, client: WebClient) -> None:
    opened = client.views_open(trigger_id="1001.2002.abc", view=MODAL)

    view = slack.view(opened["view"]["id"])
    assert (view.type, view.title, view.callback_id, view.trigger_id, view.hash) == (
        "modal",
        "Edit draft",
        "edit_draft",
        "1001.2002.abc",
        opened["view"]["hash"],
    )


def test_reused_trigger_id_is_refused_with_exchanged_trigger_id(client: WebClient) -> None:
    client.views_open(trigger_id="1001.2002.abc", view=MODAL)

    with pytest.raises(SlackApiError) as refused:
        client.views_open(trigger_id="1001.2002.abc", view=MODAL)

    assert slack_error(refused) == "exchanged_trigger_id"


def test_trigger_id_marked_expired_is_refused_with_expired_trigger_id(
    slack: SlackStandIn, client: WebClient
) -> None:
    slack.expire_trigger_id("1001.2002.old")

    with pytest.raises(SlackApiError) as refused:
        client.views_open(trigger_id="1001.2002.old", view=MODAL)

    assert slack_error(refused) == "expired_trigger_id"
    assert slack.views == []


def test_issued_trigger_id_expires_three_seconds_after_the_interaction() -> None:
    now = [1_700_000_000.0]
    stand_in = SlackStandIn(clock=lambda: now[0])
    trigger_id = stand_in.issue_trigger_id(user_id="U0SANDBOXADM")
    now[0] += 3.5

    reply = stand_in.call(
        "views.open", {"trigger_id": trigger_id, "view": MODAL}, token=DEFAULT_BOT_TOKEN
    )

    assert reply.body == {"ok": False, "error": "expired_trigger_id"}


def test_modal_without_a_title_is_refused_with_invalid_arguments(client: WebClient) -> None:
    untitled = {k: v for k, v in MODAL.items() if k != "title"}

    with pytest.raises(SlackApiError) as refused:
        client.views_open(trigger_id="1001.2002.abc", view=untitled)

    assert slack_error(refused) == "invalid_arguments"


def test_view_update_replaces_the_blocks_and_changes_the_hash(
    slack: SlackStandIn, client: WebClient
) -> None:
    opened = client.views_open(trigger_id="1001.2002.abc", view=MODAL)["view"]
    loaded = {**MODAL, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}]}

    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=loaded)

    view = slack.view(opened["id"])
    assert (view.blocks, view.update_count, view.hash) == (
        loaded["blocks"],
        1,
        updated["view"]["hash"],
    )
    assert view.hash != opened["hash"]


def test_view_update_with_a_stale_hash_is_refused_with_hash_conflict(client: WebClient) -> None:
    opened = client.views_open(trigger_id="1001.2002.abc", view=MODAL)["view"]
    client.views_update(view_id=opened["id"], hash=opened["hash"], view=MODAL)

    with pytest.raises(SlackApiError) as refused:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=MODAL)

    assert slack_error(refused) == "hash_conflict"


def test_view_sent_as_json_text_in_a_form_is_parsed(slack: SlackStandIn, client: WebClient) -> None:
    client.api_call("views.open", params={"trigger_id": "1001.2002.abc", "view": json.dumps(MODAL)})

    assert [v.definition for v in slack.views] == [MODAL]


def test_home_tab_is_published_once_per_user_and_republished_in_place(
    slack: SlackStandIn, client: WebClient
) -> None:
    home = {
        "type": "home",
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "Hi"}}],
    }

    first = client.views_publish(user_id="U0DANA", view=home)
    second = client.views_publish(user_id="U0DANA", view=home, hash=first["view"]["hash"])

    assert second["view"]["id"] == first["view"]["id"]
    assert slack.home_view("U0DANA").update_count == 1


# ---- users and conversations -------------------------------------------------------------------


def test_users_info_of_an_unknown_user_raises_user_not_found(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.users_info(user="U0NOBODY")

    assert slack_error(refused) == "user_not_found"


def test_users_info_returns_the_profile_with_email(client: WebClient) -> None:
    user = client.users_info(user="U0DANA")["user"]

    assert (user["id"], user["name"], user["team_id"], user["profile"]["email"]) == (
        "U0DANA",
        "dana",
        DEFAULT_TEAM_ID,
        "dana@pinnaclelending.com",
    )


def test_lookup_by_email_finds_the_user_or_answers_users_not_found(client: WebClient) -> None:
    assert client.users_lookupByEmail(email="Dana@PinnacleLending.com")["user"]["id"] == "U0DANA"

    with pytest.raises(SlackApiError) as refused:
        client.users_lookupByEmail(email="nobody@example.com")

    assert slack_error(refused) == "users_not_found"


def test_conversations_open_gives_the_same_dm_id_every_time(
    slack: SlackStandIn, client: WebClient
) -> None:
    first = client.conversations_open(users="U0DANA")
    second = client.conversations_open(users=["U0DANA"])

    assert first["channel"]["id"] == second["channel"]["id"] == slack.dm_channel_id("U0DANA")
    assert first["channel"]["id"].startswith("D")
    assert (first.get("already_open"), second["already_open"]) == (None, True)


def test_conversations_info_describes_a_dm(client: WebClient) -> None:
    dm = client.conversations_open(users="U0DANA")["channel"]["id"]

    channel = client.conversations_info(channel=dm)["channel"]

    assert (channel["id"], channel["is_im"], channel["user"]) == (dm, True, "U0DANA")


# ---- files -------------------------------------------------------------------------------------


def test_files_upload_v2_records_the_file_and_shares_it(
    slack: SlackStandIn, client: WebClient
) -> None:
    response = client.files_upload_v2(
        channel=DEFAULT_CHANNEL_ID,
        content="email,status\ndana@pinnaclelending.com,sent\n",
        filename="launch-report.csv",
        title="Launch report",
        initial_comment="Q4 win-back: 1 sent",
    )

    [uploaded] = slack.uploaded_files
    assert response["file"]["id"] == uploaded.id
    assert (
        uploaded.filename,
        uploaded.title,
        uploaded.content,
        uploaded.channels,
        uploaded.completed,
    ) == (
        "launch-report.csv",
        "Launch report",
        b"email,status\ndana@pinnaclelending.com,sent\n",
        (DEFAULT_CHANNEL_ID,),
        True,
    )
    shared = slack.last_message(DEFAULT_CHANNEL_ID)
    assert (shared.text, [f["id"] for f in shared.files or []]) == (
        "Q4 win-back: 1 sent",
        [uploaded.id],
    )


def test_completing_an_upload_that_was_never_sent_is_refused_with_file_not_found(
    client: WebClient,
) -> None:
    started = client.files_getUploadURLExternal(filename="x.csv", length=3)

    with pytest.raises(SlackApiError) as refused:
        client.files_completeUploadExternal(files=[{"id": started["file_id"], "title": "x"}])

    assert slack_error(refused) == "file_not_found"


def chart_blocks(file_id: str, **slack_file: str) -> list[dict[str, Any]]:
    """A digest's header and its chart: an image block that refers to an uploaded file."""
    return [
        {"type": "header", "text": {"type": "plain_text", "text": "Engagement digest"}},
        {
            "type": "image",
            "slack_file": slack_file or {"id": file_id},
            "alt_text": "Sends and replies per day",
            "title": {"type": "plain_text", "text": "Sends and replies, last 30 days"},
        },
    ]


def upload_privately(client: WebClient, content: bytes = b"\x89PNG chart") -> str:
    """Upload a file shared in no channel (the digest's chart); return its id."""
    return str(client.files_upload_v2(content=content, filename="trend.png")["file"]["id"])


def test_a_private_upload_completes_without_a_channel_and_posts_nothing(
    slack: SlackStandIn, client: WebClient
) -> None:
    file_id = upload_privately(client)

    [uploaded] = slack.uploaded_files
    assert (uploaded.id, uploaded.content, uploaded.completed, uploaded.channels) == (
        file_id,
        b"\x89PNG chart",
        True,
        (),
    )
    assert slack.messages() == []


def test_an_image_block_of_a_completed_upload_is_posted_and_updated(
    slack: SlackStandIn, client: WebClient
) -> None:
    first, second = upload_privately(client), upload_privately(client, b"\x89PNG again")

    posted = client.chat_postMessage(
        channel=DEFAULT_CHANNEL_ID, text="Digest", blocks=chart_blocks(first)
    )
    client.chat_update(
        channel=DEFAULT_CHANNEL_ID, ts=posted["ts"], text="Digest", blocks=chart_blocks(second)
    )

    message = slack.last_message(DEFAULT_CHANNEL_ID)
    assert (message.blocks or [])[1]["slack_file"] == {"id": second}
    assert message.edit_count == 1


def test_an_image_block_may_name_its_file_by_its_private_url(
    slack: SlackStandIn, client: WebClient
) -> None:
    file_id = upload_privately(client)
    url = f"https://files.slack.com/files-pri/{DEFAULT_TEAM_ID}-{file_id}/trend.png"

    client.chat_postMessage(
        channel=DEFAULT_CHANNEL_ID, text="Digest", blocks=chart_blocks(file_id, url=url)
    )

    assert (slack.last_message(DEFAULT_CHANNEL_ID).blocks or [])[1]["slack_file"] == {"url": url}


def invalid_file(raised: pytest.ExceptionInfo[SlackApiError]) -> tuple[Any, Any]:
    response = raised.value.response
    return response["error"], response["response_metadata"]["messages"]


def test_an_image_block_naming_an_unknown_or_unfinished_upload_is_refused_with_invalid_blocks(
    slack: SlackStandIn, client: WebClient
) -> None:
    started = client.files_getUploadURLExternal(filename="trend.png", length=11)["file_id"]
    refusal = ("invalid_blocks", ["[ERROR] invalid slack file [json-pointer:/blocks/1/slack_file]"])

    for file_id in ("F0SB999999", started):
        with pytest.raises(SlackApiError) as refused:
            client.chat_postMessage(
                channel=DEFAULT_CHANNEL_ID, text="Digest", blocks=chart_blocks(file_id)
            )
        assert invalid_file(refused) == refusal
    assert slack.messages(DEFAULT_CHANNEL_ID) == []


def test_an_update_to_an_image_of_a_missing_file_is_refused_and_the_message_stays(
    slack: SlackStandIn, client: WebClient
) -> None:
    file_id = upload_privately(client)
    posted = client.chat_postMessage(
        channel=DEFAULT_CHANNEL_ID, text="Digest", blocks=chart_blocks(file_id)
    )

    with pytest.raises(SlackApiError) as refused:
        client.chat_update(
            channel=DEFAULT_CHANNEL_ID,
            ts=posted["ts"],
            text="Digest",
            blocks=chart_blocks("F0SB999999"),
        )

    assert invalid_file(refused)[0] == "invalid_blocks"
    message = slack.last_message(DEFAULT_CHANNEL_ID)
    assert ((message.blocks or [])[1]["slack_file"], message.edit_count) == ({"id": file_id}, 0)


def test_a_file_of_another_workspace_cannot_be_shown_in_an_image_block(
    served_slack: ServedSlack, slack: SlackStandIn, client: WebClient
) -> None:
    slack.add_team("T0OTHER", "Other Appraisals")
    slack.add_token("xoxb-other-team", "T0OTHER")
    theirs = upload_privately(served_slack.client(token="xoxb-other-team"))

    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x", blocks=chart_blocks(theirs))

    assert invalid_file(refused)[0] == "invalid_blocks"


@pytest.mark.parametrize(
    ("slack_file", "message"),
    [
        (
            {"id": "F0SB000001", "url": "https://files.slack.com/files-pri/T-F/x.png"},
            "[ERROR] must provide exactly one of: id, url [json-pointer:/blocks/1/slack_file]",
        ),
        (
            {"id": "trend.png"},
            "[ERROR] input must match regex pattern: ^[F][A-Z0-9]{8,}$ "
            "[json-pointer:/blocks/1/slack_file/id]",
        ),
        ({}, "[ERROR] must provide exactly one of: id, url [json-pointer:/blocks/1/slack_file]"),
    ],
)
def test_a_malformed_slack_file_is_refused_with_invalid_blocks(
    client: WebClient, slack_file: dict[str, str], message: str
) -> None:
    blocks = chart_blocks("unused")
    blocks[1]["slack_file"] = slack_file

    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x", blocks=blocks)

    assert invalid_file(refused) == ("invalid_blocks", [message])


def test_an_image_block_without_alt_text_or_with_both_sources_is_refused(
    client: WebClient,
) -> None:
    file_id = upload_privately(client)
    no_alt = chart_blocks(file_id)
    del no_alt[1]["alt_text"]
    both = chart_blocks(file_id)
    both[1]["image_url"] = "https://example.com/chart.png"

    problems = []
    for blocks in (no_alt, both):
        with pytest.raises(SlackApiError) as refused:
            client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x", blocks=blocks)
        problems.append(invalid_file(refused))

    assert problems == [
        ("invalid_blocks", ["[ERROR] missing required field: alt_text [json-pointer:/blocks/1]"]),
        (
            "invalid_blocks",
            ["[ERROR] must provide exactly one of: image_url, slack_file [json-pointer:/blocks/1]"],
        ),
    ]


# ---- permalinks --------------------------------------------------------------------------------


def test_get_permalink_links_a_message_and_a_reply_in_its_thread(client: WebClient) -> None:
    parent = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="Engagement digest")
    reply = client.chat_postMessage(
        channel=DEFAULT_CHANNEL_ID, text="…and 12 more", thread_ts=parent["ts"]
    )

    linked = client.chat_getPermalink(channel=DEFAULT_CHANNEL_ID, message_ts=parent["ts"])
    threaded = client.chat_getPermalink(channel=DEFAULT_CHANNEL_ID, message_ts=reply["ts"])

    base = f"https://sandbox-appraisals.slack.com/archives/{DEFAULT_CHANNEL_ID}/p"
    assert (linked["channel"], linked["permalink"]) == (
        DEFAULT_CHANNEL_ID,
        base + parent["ts"].replace(".", ""),
    )
    assert threaded["permalink"] == (
        f"{base}{reply['ts'].replace('.', '')}?thread_ts={parent['ts']}&cid={DEFAULT_CHANNEL_ID}"
    )


def test_get_permalink_of_an_unknown_message_or_channel_is_refused(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as no_message:
        client.chat_getPermalink(channel=DEFAULT_CHANNEL_ID, message_ts="1700000000.000100")
    with pytest.raises(SlackApiError) as no_channel:
        client.chat_getPermalink(channel="C0NOSUCH", message_ts="1700000000.000100")

    assert (slack_error(no_message), slack_error(no_channel)) == (
        "message_not_found",
        "channel_not_found",
    )


# ---- auth --------------------------------------------------------------------------------------


def test_unknown_token_is_refused_with_invalid_auth(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    with pytest.raises(SlackApiError) as refused:
        served_slack.client(token="xoxb-not-a-real-token").auth_test()

    assert slack_error(refused) == "invalid_auth"


def test_missing_token_is_refused_with_not_authed(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    with pytest.raises(SlackApiError) as refused:
        served_slack.client(token=None).chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")

    assert slack_error(refused) == "not_authed"
    assert slack.messages(DEFAULT_CHANNEL_ID) == []


def test_token_in_a_form_field_is_accepted(served_slack: ServedSlack, slack: SlackStandIn) -> None:
    form = {"token": DEFAULT_BOT_TOKEN, "channel": DEFAULT_CHANNEL_ID, "text": "form post"}

    answer = httpx.post(served_slack.api_url + "chat.postMessage", data=form).json()

    assert answer["ok"] is True
    assert slack.calls("chat.postMessage")[0].token == DEFAULT_BOT_TOKEN


def test_token_inside_a_json_body_is_not_read(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    body = {"token": DEFAULT_BOT_TOKEN, "channel": DEFAULT_CHANNEL_ID, "text": "json post"}

    answer = httpx.post(served_slack.api_url + "chat.postMessage", json=body).json()

    assert answer == {"ok": False, "error": "not_authed"}


def test_token_without_the_scope_is_refused_with_missing_scope(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    slack.add_token("xoxb-chat-only", scopes=frozenset({"chat:write"}))

    with pytest.raises(SlackApiError) as refused:
        served_slack.client(token="xoxb-chat-only").users_lookupByEmail(email="dana@x.com")

    assert refused.value.response.data == {
        "ok": False,
        "error": "missing_scope",
        "needed": "users:read.email",
        "provided": "chat:write",
    }


def test_a_workspace_token_sees_nothing_of_another_workspace(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    slack.add_team("T0OTHER", "Other Appraisals")
    slack.add_token("xoxb-other-team", "T0OTHER")
    other = served_slack.client(token="xoxb-other-team")

    with pytest.raises(SlackApiError) as user_refused:
        other.users_info(user="U0DANA")
    with pytest.raises(SlackApiError) as post_refused:
        other.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="leak")

    assert (slack_error(user_refused), slack_error(post_refused)) == (
        "user_not_found",
        "channel_not_found",
    )


def test_unknown_method_answers_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.api_call("chat.teleport", json={"channel": DEFAULT_CHANNEL_ID})

    assert slack_error(refused) == "unknown_method"


# ---- faults and rate limits --------------------------------------------------------------------


def test_injected_channel_not_found_surfaces_as_slack_api_error(
    slack: SlackStandIn, client: WebClient
) -> None:
    slack.fail_next("chat.postMessage", "channel_not_found")

    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="first")
    client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="second")

    assert slack_error(refused) == "channel_not_found"
    assert [m.text for m in slack.messages(DEFAULT_CHANNEL_ID)] == ["second"]


def test_ratelimited_call_is_retried_after_retry_after_and_lands_once(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    slack.fail_next("chat.postMessage", "ratelimited", retry_after=1)
    retrying = served_slack.client(retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])

    retrying.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="Q4 win-back")

    attempts = slack.calls("chat.postMessage")
    assert [(c.status, c.error) for c in attempts] == [(429, "ratelimited"), (200, None)]
    assert attempts[1].at - attempts[0].at >= 1.0
    assert [m.text for m in slack.messages(DEFAULT_CHANNEL_ID)] == ["Q4 win-back"]


def test_ratelimited_answer_is_http_429_with_retry_after(
    slack: SlackStandIn, client: WebClient
) -> None:
    slack.fail_next("chat.postMessage", "ratelimited", retry_after=7)

    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")

    response = refused.value.response
    assert (response.status_code, response.headers["Retry-After"], response.data) == (
        429,
        "7",
        {"ok": False, "error": "ratelimited"},
    )


def test_second_post_to_a_channel_within_a_second_is_answered_429(
    slack: SlackStandIn, client: WebClient
) -> None:
    slack.rate_limit_per_channel(messages_per_second=1.0)
    slack.add_channel("C0DEALS", "deals")
    client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="one")

    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="two")
    client.chat_postMessage(channel="C0DEALS", text="another channel has its own budget")

    assert (refused.value.response.status_code, refused.value.response.headers["Retry-After"]) == (
        429,
        "1",
    )
    assert [m.text for m in slack.messages(DEFAULT_CHANNEL_ID)] == ["one"]
    assert len(slack.messages("C0DEALS")) == 1


def test_posting_at_the_channel_limit_with_retries_loses_no_message(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    slack.rate_limit_per_channel(messages_per_second=1.0)
    retrying = served_slack.client(retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)])

    for text in ("one", "two"):
        retrying.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text=text)

    assert [m.text for m in slack.messages(DEFAULT_CHANNEL_ID)] == ["one", "two"]
    assert [c.status for c in slack.calls("chat.postMessage")] == [200, 429, 200]


def test_fault_for_a_misspelt_method_is_rejected_at_once(slack: SlackStandIn) -> None:
    with pytest.raises(ValueError, match="chat.postmessage"):
        slack.fail_next("chat.postmessage", "channel_not_found")


def test_wait_for_raises_when_the_call_never_comes(slack: SlackStandIn) -> None:
    with pytest.raises(TimeoutError, match="expected 1 chat.postMessage"):
        slack.wait_for("chat.postMessage", 1, 0.05)


# ---- OAuth install -----------------------------------------------------------------------------


def test_oauth_code_exchanges_once_for_a_bot_token_of_the_installing_team(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    slack.add_oauth_code(
        "code-1", team_id="T0LENDER", team_name="Pinnacle Lending", installer_user_id="U0MARIA"
    )
    anonymous = served_slack.client(token=None)

    granted = anonymous.oauth_v2_access(
        client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, code="code-1"
    )
    with pytest.raises(SlackApiError) as replayed:
        anonymous.oauth_v2_access(
            client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, code="code-1"
        )

    assert (granted["team"], granted["bot_user_id"], granted["authed_user"]) == (
        {"name": "Pinnacle Lending", "id": "T0LENDER"},
        "U0LENDERBOT",
        {"id": "U0MARIA"},
    )
    assert granted["access_token"].startswith("xoxb-")
    installed = served_slack.client(token=granted["access_token"]).auth_test()
    assert (installed["team_id"], installed["bot_id"]) == ("T0LENDER", "B0LENDERBOT")
    assert slack_error(replayed) == "invalid_code"


def test_oauth_with_a_wrong_client_secret_is_refused(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    slack.add_oauth_code("code-2")

    with pytest.raises(SlackApiError) as refused:
        served_slack.client(token=None).oauth_v2_access(
            client_id=DEFAULT_CLIENT_ID, client_secret="wrong", code="code-2"
        )

    assert slack_error(refused) == "bad_client_secret"


def test_authorize_page_redirects_back_with_a_code_that_exchanges(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    query = {
        "client_id": DEFAULT_CLIENT_ID,
        "scope": "chat:write,commands",
        "state": "s-1",
        "redirect_uri": "http://127.0.0.1:1/slack/oauth_redirect",
    }

    page = httpx.get(f"{served_slack.server.url}/oauth/v2/authorize", params=query)
    callback = httpx.URL(page.headers["location"])
    granted = served_slack.client(token=None).oauth_v2_access(
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        code=callback.params["code"],
        redirect_uri=query["redirect_uri"],
    )

    assert (page.status_code, callback.params["state"]) == (302, "s-1")
    assert (granted["team"]["id"], granted["scope"]) == (DEFAULT_TEAM_ID, "chat:write,commands")


# ---- Bolt --------------------------------------------------------------------------------------


def test_bolt_app_starts_against_the_stand_in_and_its_listener_posts(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    app = App(client=served_slack.client(), signing_secret=SIGNING_SECRET)

    @app.command("/campaign")
    def launch(ack: Ack, command: dict[str, str], client: WebClient) -> None:
        ack()
        client.chat_postMessage(channel=command["channel_id"], text=f"Launching {command['text']}")

    body = slash_command_body(
        "/campaign",
        "launch q4-winback",
        user_id="U0DANA",
        channel_id=DEFAULT_CHANNEL_ID,
        team_id=DEFAULT_TEAM_ID,
        trigger_id="1001.2002.abc",
    )
    headers: dict[str, str | Sequence[str]] = {
        **signed_headers(body, signing_secret=SIGNING_SECRET)
    }
    response = app.dispatch(BoltRequest(body=body, headers=headers))

    assert response.status == 200
    slack.wait_for("chat.postMessage", 1)
    assert [c.method for c in slack.calls()] == ["auth.test", "chat.postMessage"]
    assert slack.last_message(DEFAULT_CHANNEL_ID).text == "Launching launch q4-winback"


def test_bolt_respond_lands_as_an_ephemeral_for_the_user_who_ran_the_command(
    served_slack: ServedSlack, slack: SlackStandIn
) -> None:
    app = App(client=served_slack.client(), signing_secret=SIGNING_SECRET)

    @app.command("/campaign")
    def launch(ack: Ack, respond: Respond) -> None:
        ack()
        respond("Campaign q4-winback not found: run /campaign list to see the names.")

    body = slash_command_body(
        "/campaign",
        "launch q4-winback",
        user_id="U0DANA",
        channel_id=DEFAULT_CHANNEL_ID,
        team_id=DEFAULT_TEAM_ID,
        trigger_id="1001.2002.abc",
        response_url=slack.response_url(channel=DEFAULT_CHANNEL_ID, user="U0DANA"),
    )
    headers: dict[str, str | Sequence[str]] = {
        **signed_headers(body, signing_secret=SIGNING_SECRET)
    }
    app.dispatch(BoltRequest(body=body, headers=headers))

    slack.wait_for("response_url", 1)
    assert [e.text for e in slack.ephemerals(DEFAULT_CHANNEL_ID, "U0DANA")] == [
        "Campaign q4-winback not found: run /campaign list to see the names."
    ]


def test_replace_original_through_a_response_url_updates_the_clicked_card(
    slack: SlackStandIn, client: WebClient
) -> None:
    card = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="Draft", blocks=CARD_BLOCKS)
    url = slack.response_url(channel=DEFAULT_CHANNEL_ID, user="U0DANA", message_ts=card["ts"])
    done = [{"type": "context", "elements": [{"type": "mrkdwn", "text": "🚫 Rejected by @dana"}]}]

    answer = WebhookClient(url).send(replace_original=True, text="Rejected", blocks=done)

    assert (answer.status_code, answer.body) == (200, "ok")
    message = slack.last_message(DEFAULT_CHANNEL_ID)
    assert (message.ts, message.text, message.blocks) == (card["ts"], "Rejected", done)
