"""The sandbox console renders Block Kit as Slack shows it; no text of a block becomes markup."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain.digest_message import with_chart
from handlers.slack.blocks import bulk_message, card_message, edit_modal, home_view
from sandbox.console import blockkit
from sandbox.console.app import COMMANDS
from sandbox.console.blockkit import (
    Directory,
    ElementChanged,
    block_html,
    blocks_html,
    element_html,
    find_element,
    find_shown_element,
    input_element_html,
    message_html,
    modal_html,
    mrkdwn,
    state_values,
)
from tests.unit.test_reply_card_blocks import reply_card, reply_payload, view_of

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
RENDERED_TAGS = {
    "a", "b", "i", "s", "br", "code", "pre", "blockquote", "span", "div", "button", "select",
    "option", "optgroup", "template", "hr", "figure", "img", "label", "input", "textarea",
    "form", "ul", "ol", "li",
}  # fmt: skip
NAMES = Directory(
    user_name=lambda u: {"U0MARIA": "Maria Lopez"}.get(u, u),
    channel_name=lambda c: {"C0DEALS": "deals"}.get(c, c),
    file_url=lambda f: "/sandbox/files/F0SB000001" if f == "F0SB000001" else None,
    users=[("U0MARIA", "Maria Lopez"), ("U0DANA", "Dana <Whitfield>")],
    conversations=[("C0DEALS", "#deals")],
)


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def md(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def no_markup_from(html: str) -> None:
    """Nothing of HOSTILE became a tag or an attribute: every tag is one the renderer writes,
    and no tag has an event handler."""
    tags = re.findall(r"<(/?)([a-zA-Z0-9]+)([^>]*)>", html)
    assert {name for _, name, _ in tags} <= RENDERED_TAGS
    unquoted = [re.sub(r'"[^"]*"', '""', attrs) for _, _, attrs in tags]
    assert not [attrs for attrs in unquoted if re.search(r"\son\w+\s*=", attrs)]


# ---- mrkdwn ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("*bold* _italic_ ~strike~", "<b>bold</b> <i>italic</i> <s>strike</s>"),
        ("`a < b`", "<code>a &lt; b</code>"),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        ("* not bold *", "* not bold *"),
        (":white_check_mark: Sent :zzz: :unknown_code:", "✅ Sent 💤 :unknown_code:"),
        ("10:30:00", "10:30:00"),
        ("Tom &amp; Jerry &lt;3", "Tom &amp; Jerry &lt;3"),
        (
            "<@U0MARIA> in <#C0DEALS>",
            '<span class="sb-mention">@Maria Lopez</span> in '
            '<span class="sb-mention">#deals</span>',
        ),
        ("<#C0DEALS|named>", '<span class="sb-mention">#named</span>'),
        ("<!here> look", '<span class="sb-mention">@here</span> look'),
        ("at <!date^1764775800^{time}|15:30 UTC>", "at 15:30 UTC"),
        (
            "<https://example.com/a?b=1&amp;c=2|the *label*>",
            '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" '
            'rel="noopener noreferrer">the *label*</a>',
        ),
        (
            "<mailto:dana@x.com|Dana>",
            '<a href="mailto:dana@x.com" target="_blank" rel="noopener noreferrer">Dana</a>',
        ),
        ("<javascript:alert(1)|click me>", "click me"),
        ("one\ntwo", "one<br>two"),
        (
            ">quoted *line*\n>second\nafter",
            '<blockquote class="sb-quote">quoted <b>line</b><br>second</blockquote>after',
        ),
        ("&gt; not a quote", "&gt; not a quote"),
        (
            "```\nfirst *no* <b>\n  indented```",
            '<pre class="sb-pre">first *no* b\n  indented</pre>',
        ),
        ("*bold with <@U0MARIA>*", '<b>bold with <span class="sb-mention">@Maria Lopez</span></b>'),
    ],
)
def test_mrkdwn_reads_as_slack_reads_it(text: str, html: str) -> None:
    assert str(mrkdwn(text, NAMES)) == html


def test_text_that_slack_would_show_as_text_stays_text() -> None:
    # Salesbot escapes outside text (domain.mrkdwn.safe); unescaped, Slack reads <…> as a link.
    escaped = HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert str(mrkdwn(escaped)) == (
        "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
    )
    no_markup_from(str(mrkdwn(HOSTILE)))
    assert "\x00" not in str(mrkdwn("a\x00b\x000\x00"))


def test_a_link_label_cannot_break_out_of_its_attribute_or_tag() -> None:
    html = str(mrkdwn('<https://x.com/"onmouseover="alert(1)|"><b>x</b>>'))

    assert 'href="https://x.com/&#34;onmouseover=&#34;alert(1)"' in html
    assert "<b>x</b>" not in html


# ---- blocks ------------------------------------------------------------------------------------


def test_a_section_shows_its_text_fields_and_accessory_button() -> None:
    block = {
        "type": "section",
        "block_id": "card_head",
        "text": md("*Dana* replied"),
        "fields": [md("*Intent*\nmeeting"), plain("Score 88")],
        "accessory": {
            "type": "button",
            "text": plain("Open"),
            "action_id": "open",
            "url": "https://crm.example.com/c/1",
        },
    }

    html = str(block_html(block, 3, NAMES))

    assert 'data-block-id="card_head"' in html
    assert "<b>Dana</b> replied" in html
    assert '<div class="sb-field"><b>Intent</b><br>meeting</div>' in html
    assert '<div class="sb-field">Score 88</div>' in html
    assert (
        'data-loc="b3.acc" data-action-id="open" data-block-id="card_head" data-button-value=""'
        ' data-url="https://crm.example.com/c/1">Open</button>'
    ) in html


def test_buttons_keep_their_style_and_a_confirm_dialog() -> None:
    block = {
        "type": "actions",
        "elements": [
            {"type": "button", "text": plain("Approve & send"), "style": "primary"},
            {"type": "button", "text": plain("Reject"), "style": "danger"},
            {
                "type": "button",
                "text": plain("Approve all 6"),
                "confirm": {
                    "title": plain("Send them all?"),
                    "text": md("This sends *6* emails."),
                    "confirm": plain("Approve all"),
                    "deny": plain("Cancel"),
                },
            },
            {"type": "button", "text": plain("Plain"), "style": "javascript"},
        ],
    }

    html = str(block_html(block, 0))

    shown = 'data-action-id="" data-block-id="sb-block-0" data-button-value=""'
    assert f'class="sb-btn sb-btn-primary" data-loc="b0.e0" {shown}>Approve &amp; send<' in html
    assert f'class="sb-btn sb-btn-danger" data-loc="b0.e1" {shown}>Reject<' in html
    assert '<template class="sb-confirm"><div class="sb-confirm-title">Send them all?' in html
    assert "This sends <b>6</b> emails." in html
    assert ">Approve all</button></div></template>" in html
    assert f'class="sb-btn" data-loc="b0.e3" {shown}>Plain<' in html


def test_an_overflow_menu_and_a_static_select_list_their_options() -> None:
    snooze = {
        "type": "static_select",
        "action_id": "card_snooze",
        "placeholder": plain("💤 Snooze"),
        "options": [{"text": plain("1 hour"), "value": "1h:42"}],
        "option_groups": [
            {"label": plain("Later"), "options": [{"text": plain("Tomorrow"), "value": "1d:42"}]}
        ],
    }
    more = {
        "type": "overflow",
        "action_id": "card_more",
        "options": [{"text": plain("View thread"), "value": 'thread:42"><b>'}],
    }

    select_html = str(element_html(snooze, "b4.e5", block_id="card_7"))
    overflow_html = str(element_html(more, "b4.e6", block_id="card_7"))

    assert select_html == (
        '<select class="sb-select" data-loc="b4.e5" data-action-id="card_snooze"'
        ' data-block-id="card_7"><option value="" selected>💤 Snooze</option>'
        '<option value="1h:42">1 hour</option><optgroup label="Later">'
        '<option value="1d:42">Tomorrow</option></optgroup></select>'
    )
    assert (
        'data-loc="b4.e6" data-action-id="card_more" data-block-id="card_7"'
        ' data-value="thread:42&#34;&gt;&lt;b&gt;">View thread</button>'
    ) in overflow_html
    assert 'class="sb-btn sb-overflow-toggle"' in overflow_html


def test_context_divider_header_and_images_render() -> None:
    blocks = [
        {"type": "header", "text": plain("Weekly digest :chart_with_upwards_trend:")},
        {
            "type": "context",
            "elements": [
                {"type": "image", "image_url": "https://x.com/i.png", "alt_text": "logo"},
                md("by <@U0MARIA>"),
            ],
        },
        {"type": "divider"},
        {
            "type": "image",
            "slack_file": {"id": "F0SB000001"},
            "alt_text": 'a "chart"',
            "title": plain("Sends and replies"),
        },
        {"type": "image", "slack_file": {"id": "F0MISSING1"}, "alt_text": "gone"},
        {"type": "image", "image_url": "javascript:alert(1)", "alt_text": "bad"},
    ]

    html = str(blocks_html(blocks, NAMES))

    assert '<div class="sb-block sb-header">Weekly digest 📈</div>' in html
    assert '<img class="sb-context-image" src="https://x.com/i.png" alt="logo"' in html
    assert '<span class="sb-mention">@Maria Lopez</span>' in html
    assert '<hr class="sb-block sb-divider">' in html
    assert '<div class="sb-image-title">Sends and replies</div>' in html
    assert 'src="/sandbox/files/F0SB000001" alt="a &#34;chart&#34;"' in html
    assert "[image: gone]" in html
    assert "[image: bad]" in html
    assert "javascript:" not in html


def test_rich_text_shows_its_styles_lists_quotes_and_mentions() -> None:
    block = {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "Hi ", "style": {"bold": True}},
                    {"type": "user", "user_id": "U0MARIA"},
                    {"type": "emoji", "name": "wave", "unicode": "1f44b"},
                    {"type": "link", "url": "https://x.com", "text": "site"},
                    {"type": "text", "text": "<b>", "style": {"code": True}},
                ],
            },
            {
                "type": "rich_text_list",
                "style": "ordered",
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": "one"}]}
                ],
            },
            {"type": "rich_text_quote", "elements": [{"type": "text", "text": "said"}]},
            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "x = 1"}]},
        ],
    }

    html = str(block_html(block, 0, NAMES))

    assert "<b>Hi </b>" in html
    assert '<span class="sb-mention">@Maria Lopez</span>👋' in html
    assert ">site</a><code>&lt;b&gt;</code>" in html
    assert '<ol><li><div class="sb-rt-section">one</div></li></ol>' in html
    assert '<blockquote class="sb-quote">said</blockquote>' in html
    assert '<pre class="sb-pre">x = 1</pre>' in html


def test_an_unknown_block_says_what_it_is_and_markdown_stays_text() -> None:
    assert str(block_html({"type": "video"}, 0)) == '<div class="sb-unknown">[video block]</div>'
    assert str(block_html({"type": "markdown", "text": "**hi** <i>"}, 0)) == (
        '<div class="sb-block sb-markdown">**hi** &lt;i&gt;</div>'
    )


def test_a_message_without_blocks_shows_its_text_and_attachments() -> None:
    html = str(
        message_html(
            "*Launched*", None, [{"color": "#36a64f", "text": "a note"}, {"color": HOSTILE}]
        )
    )

    assert '<div class="sb-body"><b>Launched</b></div>' in html
    assert 'style="border-left-color:#36a64f">a note</div>' in html
    no_markup_from(html)


# ---- modals ------------------------------------------------------------------------------------


def test_each_input_element_renders_with_its_initial_value() -> None:
    def field(element: dict[str, Any]) -> str:
        return str(input_element_html(element, 2, NAMES, required=True))

    assert field({"type": "plain_text_input", "initial_value": HOSTILE, "max_length": 150}) == (
        '<input class="sb-field-input" id="b2" name="b2" type="text" value="&#34;&gt;&lt;script'
        '&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" placeholder="" '
        'maxlength="150" required>'
    )
    assert field({"type": "plain_text_input", "multiline": True, "initial_value": "</textarea>"})
    assert "&lt;/textarea&gt;</textarea>" in field(
        {"type": "plain_text_input", "multiline": True, "initial_value": "</textarea>"}
    )
    assert 'type="email"' in field({"type": "email_text_input"})
    assert 'type="number"' in field({"type": "number_input"})
    assert 'type="date" value="2026-12-08"' in field(
        {"type": "datepicker", "initial_date": "2026-12-08"}
    )
    assert 'type="time" value="14:00"' in field({"type": "timepicker", "initial_time": "14:00"})
    options = [{"text": plain("A"), "value": "a"}, {"text": md("*B*"), "value": "b"}]
    assert '<option value="b" selected>*B*</option>' in field(
        {"type": "static_select", "options": options, "initial_option": options[1]}
    )
    assert 'type="checkbox" name="b2" value="a" checked> A' in field(
        {"type": "checkboxes", "options": options, "initial_options": [options[0]]}
    )
    assert 'type="radio" name="b2" value="b" required> <b>B</b>' in field(
        {"type": "radio_buttons", "options": options}
    )
    assert '<option value="U0DANA" selected>Dana &lt;Whitfield&gt;</option>' in field(
        {"type": "multi_users_select", "initial_users": ["U0DANA"]}
    )
    assert '<option value="C0DEALS">#deals</option>' in field({"type": "conversations_select"})
    assert field({"type": "file_input"}) == '<span class="sb-unknown">[file_input input]</span>'


def test_the_edit_modal_shows_title_inputs_and_buttons() -> None:
    card = reply_card(action_payload=reply_payload(subject=HOSTILE, body="Hi <Dana>"))
    modal = edit_modal(card)

    html = str(modal_html("V0SB000001", modal, NAMES))

    assert '<span class="sb-modal-title">Edit email</span>' in html
    assert 'data-container="view" data-view-id="V0SB000001"' in html
    assert '<label class="sb-label" for="b0">Subject</label>' in html
    assert ">Hi &lt;Dana&gt;</textarea>" in html
    assert '<span class="sb-optional">(optional)</span>' in html
    assert '<button type="submit" class="sb-btn sb-btn-primary">Save</button>' in html
    assert 'data-close="one">Cancel</button>' in html
    no_markup_from(html)


def test_a_submitted_form_becomes_slacks_state_values() -> None:
    modal = edit_modal(reply_card())
    form = {"b0": ["New subject"], "b1": ["New body"], "b2": ["approve"]}

    values, errors = state_values(modal["blocks"], form)

    assert errors == {}
    assert values == {
        "subject": {"subject_input": {"type": "plain_text_input", "value": "New subject"}},
        "body": {"body_input": {"type": "plain_text_input", "value": "New body"}},
        "options": {
            "approve_after_edit": {
                "type": "checkboxes",
                "selected_options": [modal["blocks"][2]["element"]["options"][0]],
            }
        },
    }


def test_selects_pickers_and_empty_optional_fields_fill_state_values() -> None:
    options = [{"text": plain("A"), "value": "a"}]
    blocks = [
        {"type": "section", "text": md("intro")},
        {
            "type": "input",
            "block_id": "pick",
            "element": {"type": "static_select", "action_id": "p", "options": options},
        },
        {"type": "input", "block_id": "when", "element": {"type": "datepicker", "action_id": "d"}},
        {"type": "input", "element": {"type": "multi_users_select", "action_id": "u"}},
        {
            "type": "input",
            "block_id": "note",
            "optional": True,
            "element": {"type": "plain_text_input", "action_id": "n"},
        },
    ]
    form = {"b1": ["a"], "b2": ["2026-12-08"], "b3": ["U0DANA", "U0MARIA"], "b4": [""]}

    values, errors = state_values(blocks, form)

    assert errors == {}
    assert values == {
        "pick": {"p": {"type": "static_select", "selected_option": options[0]}},
        "when": {"d": {"type": "datepicker", "selected_date": "2026-12-08"}},
        "sb-block-3": {
            "u": {"type": "multi_users_select", "selected_users": ["U0DANA", "U0MARIA"]}
        },
        "note": {"n": {"type": "plain_text_input", "value": None}},
    }


def test_slacks_client_refuses_an_empty_required_field_a_bad_email_or_a_forged_option() -> None:
    blocks = [
        {
            "type": "input",
            "block_id": "subject",
            "element": {"type": "plain_text_input", "action_id": "s"},
        },
        {
            "type": "input",
            "block_id": "email",
            "element": {"type": "email_text_input", "action_id": "e"},
        },
        {
            "type": "input",
            "block_id": "pick",
            "element": {
                "type": "static_select",
                "action_id": "p",
                "options": [{"text": plain("A"), "value": "a"}],
            },
        },
    ]

    _, errors = state_values(blocks, {"b0": [""], "b1": ["not-an-email"], "b2": ["z"]})

    assert errors == {
        "subject": "Please fill out this field.",
        "email": "Please enter a valid email address.",
        "pick": "'z' is not one of the options",
    }


def test_an_element_is_found_by_its_place_in_the_blocks() -> None:
    blocks = [
        {"type": "section", "text": md("x"), "accessory": {"type": "button", "action_id": "a"}},
        {"type": "actions", "block_id": "acts", "elements": [{"type": "button", "action_id": "b"}]},
    ]

    assert find_element(blocks, "b0.acc") == ({"type": "button", "action_id": "a"}, "sb-block-0")
    assert find_element(blocks, "b1.e0") == ({"type": "button", "action_id": "b"}, "acts")
    for wrong in ("b1.e1", "b2.e0", "b0.e0", "x", "b1.acc"):
        with pytest.raises(LookupError):
            find_element(blocks, wrong)


def test_an_element_is_found_only_while_it_is_still_the_one_shown() -> None:
    menu = {
        "type": "overflow",
        "action_id": "more",
        "options": [{"text": plain("x"), "value": "x"}],
    }
    blocks = [
        {
            "type": "actions",
            "block_id": "acts",
            "elements": [{"type": "button", "action_id": "approve", "value": "7:f1"}, menu],
        },
    ]
    shown = {"action_id": "approve", "block_id": "acts", "button_value": "7:f1"}

    assert find_shown_element(blocks, "b0.e0", **shown)[1] == "acts"
    assert find_shown_element(blocks, "b0.e1", action_id="more", block_id="acts", value="x")
    for loc, changed in (
        ("b0.e0", {**shown, "action_id": "reject"}),  # another button moved into its place
        ("b0.e0", {**shown, "block_id": "other"}),
        ("b0.e0", {**shown, "button_value": "7:f0"}),  # the draft changed since
        ("b0.e0", {**shown, "button_value": ""}),
        ("b0.e2", shown),  # gone
    ):
        with pytest.raises(ElementChanged):
            find_shown_element(blocks, loc, **changed)
    with pytest.raises(ElementChanged, match="no longer offers 'y'"):
        find_shown_element(blocks, "b0.e1", action_id="more", block_id="acts", value="y")


# ---- what Salesbot posts -----------------------------------------------------------------------


def test_every_block_and_element_salesbot_posts_renders() -> None:
    card = reply_card(description=HOSTILE, action_payload=reply_payload(reply_text=HOSTILE))
    _, reply_blocks = card_message(view_of(card))
    _, bulk_blocks = bulk_message(job_name=HOSTILE, batch=0, cards=[card], value="batch-1")
    home = home_view([], pending_total=0, gmail_email=None, connect_url="https://x.com/connect")
    chart = with_chart([{"type": "header", "text": plain("Digest")}], "F0SB000001", "a chart")
    posted = reply_blocks + bulk_blocks + home["blocks"] + chart + edit_modal(card)["blocks"]
    kinds = {b["type"] for b in posted} | {
        e["type"] for b in posted for e in b.get("elements", []) if "type" in e
    }

    html = str(blocks_html(posted, NAMES))

    assert {"section", "context", "actions", "divider", "header", "image", "input"} <= kinds
    assert {"button", "static_select", "overflow"} <= kinds
    assert "sb-unknown" not in html
    assert "sb-missing-image" not in html
    no_markup_from(html)


def test_the_console_offers_every_slash_command_of_the_manifest() -> None:
    manifest = yaml.safe_load((Path(__file__).parents[2] / "manifest.yml").read_text())
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]

    assert sorted(COMMANDS) == sorted(commands)


def test_every_known_emoji_shortcode_is_a_word() -> None:
    assert all(re.fullmatch(r"[a-z0-9_+\-]+", code) for code in blockkit.EMOJI)
