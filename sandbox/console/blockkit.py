"""Block Kit as HTML, for the sandbox console: pure functions from a block's JSON to markup.

Every text is escaped: a card shows an email's subject and body, which come from outside, so
nothing in a block can inject markup. Links keep http, https and mailto only. Slack's mrkdwn is
read as Slack reads it: `&amp;`, `&lt;` and `&gt;` are its escapes, `<…>` its links and
mentions, and `*bold*`, `_italic_`, `~strike~`, `` `code` ``, ```` ```pre``` ```` and `>` quotes
its formatting.

Interactive elements carry `data-loc` ("b<block>.e<element>", or "b<block>.acc" for a
section's accessory): the console reads the element back from the stored message or view by
its place, never from the browser, and sends what Slack would. They also carry what they
are (`data-action-id`, `data-block-id`, a button's `data-button-value`): `find_shown_element`
refuses a click when another element now sits at that place. Inputs of a modal are named
"b<block>"; `state_values` turns a submitted form into Slack's `state.values`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from markupsafe import Markup, escape

# The shortcodes Salesbot and people commonly write; an unknown one is left as typed.
EMOJI: Final[Mapping[str, str]] = {
    "white_check_mark": "✅",
    "heavy_check_mark": "✔️",
    "check": "✔️",
    "x": "❌",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "warning": "⚠️",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "email": "📧",
    "envelope": "✉️",
    "incoming_envelope": "📨",
    "mailbox": "📫",
    "mailbox_with_mail": "📬",
    "mailbox_with_no_mail": "📭",
    "leftwards_arrow_with_hook": "↩️",
    "telephone_receiver": "📞",
    "mag": "🔍",
    "mag_right": "🔎",
    "memo": "📝",
    "briefcase": "💼",
    "raising_hand": "🙋",
    "link": "🔗",
    "zzz": "💤",
    "tada": "🎉",
    "rocket": "🚀",
    "bell": "🔔",
    "calendar": "📆",
    "date": "📅",
    "clock1": "🕐",
    "chart_with_upwards_trend": "📈",
    "chart_with_downwards_trend": "📉",
    "bar_chart": "📊",
    "star": "⭐",
    "fire": "🔥",
    "thumbsup": "👍",
    "+1": "👍",
    "thumbsdown": "👎",
    "-1": "👎",
    "wave": "👋",
    "eyes": "👀",
    "pencil": "📝",
    "pencil2": "✏️",
    "pushpin": "📌",
    "information_source": "ℹ️",
    "question": "❓",
    "exclamation": "❗",
    "red_circle": "🔴",
    "large_green_circle": "🟢",
    "large_yellow_circle": "🟡",
    "large_blue_circle": "🔵",
    "speech_balloon": "💬",
    "robot_face": "🤖",
    "smile": "😄",
    "slightly_smiling_face": "🙂",
    "pray": "🙏",
    "handshake": "🤝",
    "moneybag": "💰",
    "house": "🏠",
    "arrows_counterclockwise": "🔄",
    "repeat": "🔁",
    "stopwatch": "⏱️",
    "pause_button": "⏸️",
    "arrow_forward": "▶️",
    "stop_button": "⏹️",
}

_SAFE_SCHEMES: Final = ("http://", "https://", "mailto:")
_PRE: Final = re.compile(r"```(.*?)```", re.S)
_CODE: Final = re.compile(r"`([^`\n]+)`")
_ANGLE: Final = re.compile(r"<([^<>\n]+)>")
_EMOJI_CODE: Final = re.compile(r":([a-z0-9_+\-]+):")
_TOKEN: Final = re.compile("\x00(\\d+)\x00")
_STYLES: Final = tuple(
    (
        re.compile(
            rf"(?<![\w{re.escape(mark)}]){re.escape(mark)}(?![\s{re.escape(mark)}])"
            rf"(.+?)(?<!\s){re.escape(mark)}(?![\w{re.escape(mark)}])"
        ),
        tag,
    )
    for mark, tag in (("*", "b"), ("_", "i"), ("~", "s"))
)
# The inputs whose value is a text, and the HTML input type each is shown as.
_TEXT_INPUTS: Final = {
    "plain_text_input": "text",
    "email_text_input": "email",
    "url_text_input": "url",
    "number_input": "number",
}


def _same(value: str) -> str:
    return value


def _no_file(_: str) -> str | None:
    return None


@dataclass(frozen=True)
class Directory:
    """What the blocks name: users' and conversations' names, and where an uploaded file's
    bytes are served (`file_url` takes a file id or its private URL)."""

    user_name: Callable[[str], str] = _same
    channel_name: Callable[[str], str] = _same
    file_url: Callable[[str], str | None] = _no_file
    #: (id, name) of the workspace's people and conversations, for the users and
    #: conversations selects of a modal.
    users: Sequence[tuple[str, str]] = field(default_factory=tuple)
    conversations: Sequence[tuple[str, str]] = field(default_factory=tuple)


PLAIN: Final = Directory()


# --------------------------------------------------------------------------------------------
# Text


def emojify(text: str) -> str:
    """Replace the known `:shortcode:`s of `text` with their emoji."""
    return _EMOJI_CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def unescape_mrkdwn(text: str) -> str:
    """Undo Slack's three escapes (`&lt;`, `&gt;`, `&amp;`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def plain_text(text: str) -> Markup:
    """A plain_text object's text: escaped, with its emoji shortcodes shown."""
    return escape(emojify(text))


def mrkdwn(text: str, names: Directory = PLAIN) -> Markup:
    """Slack's mrkdwn as HTML."""
    text = text.replace("\x00", "")
    parts: list[Markup] = []
    position = 0
    for found in _PRE.finditer(text):
        parts.append(_lines(text[position : found.start()].removesuffix("\n"), names))
        code = found.group(1).strip("\n")
        parts.append(Markup('<pre class="sb-pre">{}</pre>').format(_literal(code, names)))
        position = found.end()
        if text[position : position + 1] == "\n":
            position += 1
    parts.append(_lines(text[position:], names))
    return Markup("").join(parts)


def text_object(obj: Any, names: Directory = PLAIN) -> Markup:
    """A text object (plain_text or mrkdwn) as HTML; anything else as nothing."""
    if not isinstance(obj, Mapping):
        return Markup("")
    text = str(obj.get("text") or "")
    if obj.get("type") == "mrkdwn":
        return mrkdwn(text, names)
    return plain_text(text)


def _literal(text: str, names: Directory) -> Markup:
    """Text inside a code block: links and mentions shown as their text, no formatting."""

    def shown(found: re.Match[str]) -> str:
        return _angle_text(found.group(1), names)

    return escape(unescape_mrkdwn(_ANGLE.sub(shown, text)))


def _lines(text: str, names: Directory) -> Markup:
    if not text:
        return Markup("")
    out: list[Markup] = []
    quote: list[Markup] = []

    def flush() -> None:
        if quote:
            out.append(
                Markup('<blockquote class="sb-quote">{}</blockquote>').format(
                    Markup("<br>").join(quote)
                )
            )
            quote.clear()

    plain: list[Markup] = []
    for line in text.split("\n"):
        if line.startswith(">"):
            if plain:
                out.append(Markup("<br>").join(plain))
                plain = []
            quote.append(_inline(line[1:].removeprefix(" "), names))
        else:
            flush()
            plain.append(_inline(line, names))
    flush()
    if plain:
        out.append(Markup("<br>").join(plain))
    return Markup("").join(out)


def _inline(line: str, names: Directory) -> Markup:
    kept: list[Markup] = []

    def keep(html: Markup) -> str:
        kept.append(html)
        return f"\x00{len(kept) - 1}\x00"

    line = _CODE.sub(
        lambda m: keep(Markup("<code>{}</code>").format(_literal(m.group(1), names))), line
    )
    line = _ANGLE.sub(lambda m: keep(_angle(m.group(1), names)), line)
    html = str(escape(unescape_mrkdwn(line)))
    for pattern, tag in _STYLES:
        html = pattern.sub(rf"<{tag}>\1</{tag}>", html)
    html = emojify(html)
    return Markup(_TOKEN.sub(lambda m: str(kept[int(m.group(1))]), html))


def _angle_text(inner: str, names: Directory) -> str:
    """What a `<…>` token shows, as text."""
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return "@" + (unescape_mrkdwn(label) or names.user_name(target[1:]))
    if target.startswith("#"):
        return "#" + (unescape_mrkdwn(label) or names.channel_name(target[1:]))
    if target.startswith("!"):
        command = target[1:].split("^", 1)[0]
        if command in ("here", "channel", "everyone"):
            return "@" + command
        return unescape_mrkdwn(label)
    return unescape_mrkdwn(label or target)


def _angle(inner: str, names: Directory) -> Markup:
    target, _, _ = inner.partition("|")
    shown = _angle_text(inner, names)
    if target.startswith(("@", "#")) or target in ("!here", "!channel", "!everyone"):
        return Markup('<span class="sb-mention">{}</span>').format(shown)
    if target.startswith("!"):
        return escape(shown)
    return link(unescape_mrkdwn(target), shown)


def link(url: str, label: str) -> Markup:
    """A link that opens in a new tab, or only its label when the URL is not web or mail."""
    if not url.lower().startswith(_SAFE_SCHEMES):
        return escape(label)
    return Markup('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>').format(
        url, label
    )


def _safe_url(url: Any) -> str | None:
    return url if isinstance(url, str) and url.lower().startswith(("http://", "https://")) else None


# --------------------------------------------------------------------------------------------
# Blocks


def blocks_html(blocks: Any, names: Directory = PLAIN) -> Markup:
    """A list of blocks (a message's or a view's) as HTML."""
    if not isinstance(blocks, list):
        return Markup("")
    return Markup("").join(block_html(b, i, names) for i, b in enumerate(blocks))


def message_html(
    text: str, blocks: Any, attachments: Any = None, names: Directory = PLAIN
) -> Markup:
    """A message's body: its blocks, else its text; then its attachments."""
    body = blocks_html(blocks, names) if blocks else mrkdwn(text, names)
    parts = [Markup('<div class="sb-body">{}</div>').format(body)]
    for attachment in attachments if isinstance(attachments, list) else []:
        if not isinstance(attachment, Mapping):
            continue
        color = str(attachment.get("color") or "")
        style = (
            f"border-left-color:#{color.lstrip('#')}"
            if re.fullmatch(r"#?[0-9a-fA-F]{3,6}", color)
            else ""
        )
        inner = (
            blocks_html(attachment["blocks"], names)
            if attachment.get("blocks")
            else mrkdwn(str(attachment.get("text") or attachment.get("fallback") or ""), names)
        )
        parts.append(Markup('<div class="sb-attachment" style="{}">{}</div>').format(style, inner))
    return Markup("").join(parts)


def block_html(block: Any, index: int, names: Directory = PLAIN) -> Markup:
    """One block as HTML; `index` is its place in its message or view."""
    if not isinstance(block, Mapping):
        return Markup("")
    kind = str(block.get("type") or "")
    render = _BLOCKS.get(kind)
    if render is None:
        return Markup('<div class="sb-unknown">[{} block]</div>').format(kind or "untyped")
    return render(block, index, names)


def _section(block: Mapping[str, Any], index: int, names: Directory) -> Markup:
    main: list[Markup] = []
    if block.get("text") is not None:
        main.append(
            Markup('<div class="sb-text">{}</div>').format(text_object(block["text"], names))
        )
    fields = block.get("fields")
    if isinstance(fields, list) and fields:
        cells = Markup("").join(
            Markup('<div class="sb-field">{}</div>').format(text_object(f, names)) for f in fields
        )
        main.append(Markup('<div class="sb-fields">{}</div>').format(cells))
    accessory = block.get("accessory")
    side = (
        Markup('<div class="sb-accessory">{}</div>').format(
            element_html(accessory, f"b{index}.acc", names, block_id=block_id_of(block, index))
        )
        if isinstance(accessory, Mapping)
        else Markup("")
    )
    return Markup(
        '<div class="sb-block sb-section"{}><div class="sb-main">{}</div>{}</div>'
    ).format(_block_id_attr(block), Markup("").join(main), side)


def _context(block: Mapping[str, Any], index: int, names: Directory) -> Markup:
    items: list[Markup] = []
    for element in block.get("elements") or []:
        if not isinstance(element, Mapping):
            continue
        if element.get("type") == "image":
            items.append(_image_element(element, names, css="sb-context-image"))
        else:
            items.append(Markup("<span>{}</span>").format(text_object(element, names)))
    return Markup('<div class="sb-block sb-context"{}>{}</div>').format(
        _block_id_attr(block), Markup("").join(items)
    )


def _actions(block: Mapping[str, Any], index: int, names: Directory) -> Markup:
    elements = block.get("elements") or []
    rendered = Markup("").join(
        element_html(e, f"b{index}.e{j}", names, block_id=block_id_of(block, index))
        for j, e in enumerate(elements)
        if isinstance(e, Mapping)
    )
    return Markup('<div class="sb-block sb-actions"{}>{}</div>').format(
        _block_id_attr(block), rendered
    )


def _divider(block: Mapping[str, Any], index: int, names: Directory) -> Markup:
    return Markup('<hr class="sb-block sb-divider">')


def _header(block: Mapping[str, Any], index: int, names: Directory) -> Markup:
    return Markup('<div class="sb-block sb-header">{}</div>').format(
        text_object(block.get("text"), names)
    )


def _image(block: Mapping[str, Any], index: int, names: Directory) -> Markup:
    title = (
        Markup('<div class="sb-image-title">{}</div>').format(text_object(block["title"], names))
        if isinstance(block.get("title"), Mapping)
        else Markup("")
    )
    return Markup('<figure class="sb-block sb-image">{}{}</figure>').format(
        title, _image_element(block, names, css="sb-image-img")
    )


def _image_element(element: Mapping[str, Any], names: Directory, *, css: str) -> Markup:
    source = _safe_url(element.get("image_url"))
    file = element.get("slack_file")
    if source is None and isinstance(file, Mapping):
        source = names.file_url(str(file.get("id") or file.get("url") or ""))
    alt = str(element.get("alt_text") or "")
    if source is None:
        return Markup('<span class="sb-missing-image">[image: {}]</span>').format(alt)
    return Markup('<img class="{}" src="{}" alt="{}" title="{}">').format(css, source, alt, alt)


def _input(block: Mapping[str, Any], index: int, names: Directory) -> Markup:
    element = block.get("element")
    optional = bool(block.get("optional"))
    label = Markup('<label class="sb-label" for="b{}">{}{}</label>').format(
        index,
        text_object(block.get("label"), names),
        Markup(' <span class="sb-optional">(optional)</span>') if optional else Markup(""),
    )
    field_html = (
        input_element_html(element, index, names, required=not optional)
        if isinstance(element, Mapping)
        else Markup("")
    )
    hint = (
        Markup('<div class="sb-hint">{}</div>').format(text_object(block["hint"], names))
        if isinstance(block.get("hint"), Mapping)
        else Markup("")
    )
    return Markup(
        '<div class="sb-block sb-input"{}>{}{}{}<div class="sb-error" data-error-for="{}"></div>'
        "</div>"
    ).format(_block_id_attr(block), label, field_html, hint, block_id_of(block, index))


def _markdown(block: Mapping[str, Any], index: int, names: Directory) -> Markup:
    return Markup('<div class="sb-block sb-markdown">{}</div>').format(str(block.get("text") or ""))


def _rich_text(block: Mapping[str, Any], index: int, names: Directory) -> Markup:
    parts = [_rich_part(e, names) for e in block.get("elements") or [] if isinstance(e, Mapping)]
    return Markup('<div class="sb-block sb-rich-text">{}</div>').format(Markup("").join(parts))


def _rich_part(part: Mapping[str, Any], names: Directory) -> Markup:
    kind = part.get("type")
    inline = Markup("").join(
        _rich_inline(e, names) for e in part.get("elements") or [] if isinstance(e, Mapping)
    )
    if kind == "rich_text_section":
        return Markup('<div class="sb-rt-section">{}</div>').format(inline)
    if kind == "rich_text_preformatted":
        return Markup('<pre class="sb-pre">{}</pre>').format(inline)
    if kind == "rich_text_quote":
        return Markup('<blockquote class="sb-quote">{}</blockquote>').format(inline)
    if kind == "rich_text_list":
        tag = Markup("ol") if part.get("style") == "ordered" else Markup("ul")
        items = Markup("").join(
            Markup("<li>{}</li>").format(_rich_part(e, names))
            for e in part.get("elements") or []
            if isinstance(e, Mapping)
        )
        return Markup("<{}>{}</{}>").format(tag, items, tag)
    return Markup("")


def _rich_inline(element: Mapping[str, Any], names: Directory) -> Markup:
    kind = element.get("type")
    if kind == "text":
        html = escape(str(element.get("text") or ""))
    elif kind == "link":
        url = str(element.get("url") or "")
        html = link(url, str(element.get("text") or url))
    elif kind == "user":
        user = str(element.get("user_id") or "")
        html = Markup('<span class="sb-mention">@{}</span>').format(names.user_name(user))
    elif kind == "channel":
        channel = str(element.get("channel_id") or "")
        html = Markup('<span class="sb-mention">#{}</span>').format(names.channel_name(channel))
    elif kind == "broadcast":
        html = Markup('<span class="sb-mention">@{}</span>').format(str(element.get("range")))
    elif kind == "usergroup":
        html = Markup('<span class="sb-mention">@{}</span>').format(
            str(element.get("usergroup_id"))
        )
    elif kind == "emoji":
        name = str(element.get("name") or "")
        code = str(element.get("unicode") or "")
        try:
            shown = "".join(chr(int(c, 16)) for c in code.split("-")) if code else ""
        except ValueError:
            shown = ""
        html = escape(shown or EMOJI.get(name, f":{name}:"))
    elif kind == "date":
        html = escape(str(element.get("fallback") or element.get("timestamp") or ""))
    else:
        return Markup("")
    style = element.get("style") if isinstance(element.get("style"), Mapping) else {}
    for flag, tag in (("code", "code"), ("bold", "b"), ("italic", "i"), ("strike", "s")):
        if isinstance(style, Mapping) and style.get(flag):
            html = Markup("<{}>{}</{}>").format(Markup(tag), html, Markup(tag))
    return html


_BLOCKS: Final[dict[str, Callable[[Mapping[str, Any], int, Directory], Markup]]] = {
    "section": _section,
    "context": _context,
    "actions": _actions,
    "divider": _divider,
    "header": _header,
    "image": _image,
    "input": _input,
    "markdown": _markdown,
    "rich_text": _rich_text,
}


def _block_id_attr(block: Mapping[str, Any]) -> Markup:
    block_id = block.get("block_id")
    return (
        Markup(' data-block-id="{}"').format(block_id) if isinstance(block_id, str) else Markup("")
    )


def block_id_of(block: Mapping[str, Any], index: int) -> str:
    """A block's block_id, or the one the console gives a block without one."""
    block_id = block.get("block_id")
    return block_id if isinstance(block_id, str) and block_id else f"sb-block-{index}"


# --------------------------------------------------------------------------------------------
# Elements


def element_html(
    element: Mapping[str, Any], loc: str, names: Directory = PLAIN, *, block_id: str = ""
) -> Markup:
    """An interactive element of a message or view (button, overflow, select, image).

    Besides its place (`data-loc`), it carries its `action_id` and its block's id
    (`data-action-id`, `data-block-id`): the console sends them with a click and refuses the
    click when the element now at that place is another one (the card changed meanwhile)."""
    kind = element.get("type")
    ref = _ref_attrs(element, loc, block_id)
    if kind == "button":
        return _button(element, ref, names)
    if kind == "overflow":
        items = Markup("").join(
            Markup(
                '<button type="button" class="sb-menu-item"{} data-value="{}">{}</button>'
            ).format(ref, str(o.get("value") or ""), text_object(o.get("text"), names))
            for o in _options(element)
        )
        return Markup(
            '<span class="sb-overflow"><button type="button" class="sb-btn sb-overflow-toggle" '
            'aria-label="More actions">⋯</button><span class="sb-menu" hidden>{}</span></span>'
        ).format(items)
    if kind == "static_select":
        return Markup('<select class="sb-select"{}>{}</select>').format(
            ref, _select_options(element, names, placeholder=True)
        )
    if kind == "image":
        return _image_element(element, names, css="sb-accessory-image")
    return Markup('<span class="sb-unknown">[{}]</span>').format(str(kind or "element"))


def _ref_attrs(element: Mapping[str, Any], loc: str, block_id: str) -> Markup:
    """What names an element for a click: its place, its action_id, its block's id."""
    return Markup(' data-loc="{}" data-action-id="{}" data-block-id="{}"').format(
        loc, str(element.get("action_id") or ""), block_id
    )


def _button(element: Mapping[str, Any], ref: Markup, names: Directory) -> Markup:
    style = element.get("style")
    css = "sb-btn" + (f" sb-btn-{style}" if style in ("primary", "danger") else "")
    url = _safe_url(element.get("url"))
    confirm = element.get("confirm")
    dialog = Markup("")
    if isinstance(confirm, Mapping):
        dialog = Markup(
            '<template class="sb-confirm"><div class="sb-confirm-title">{}</div>'
            '<div class="sb-confirm-text">{}</div><div class="sb-confirm-buttons">'
            '<button type="button" class="sb-btn" data-deny>{}</button>'
            '<button type="button" class="sb-btn sb-btn-{}" data-confirm>{}</button></div>'
            "</template>"
        ).format(
            text_object(confirm.get("title"), names),
            text_object(confirm.get("text"), names),
            text_object(confirm.get("deny"), names) or "Cancel",
            "danger" if confirm.get("style") == "danger" else "primary",
            text_object(confirm.get("confirm"), names) or "Yes",
        )
    return Markup(
        '<span class="sb-el"><button type="button" class="{}"{} data-button-value="{}"{}>{}'
        "</button>{}</span>"
    ).format(
        css,
        ref,
        str(element.get("value") or ""),
        Markup(' data-url="{}"').format(url) if url else Markup(""),
        text_object(element.get("text"), names),
        dialog,
    )


def _options(element: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    options = [o for o in element.get("options") or [] if isinstance(o, Mapping)]
    for group in element.get("option_groups") or []:
        if isinstance(group, Mapping):
            options += [o for o in group.get("options") or [] if isinstance(o, Mapping)]
    return options


def _select_options(
    element: Mapping[str, Any], names: Directory, *, placeholder: bool, chosen: Sequence[str] = ()
) -> Markup:
    picked = set(chosen)
    initial = element.get("initial_option")
    if isinstance(initial, Mapping):
        picked.add(str(initial.get("value")))
    for option in element.get("initial_options") or []:
        if isinstance(option, Mapping):
            picked.add(str(option.get("value")))

    def option_html(option: Mapping[str, Any]) -> Markup:
        value = str(option.get("value") or "")
        return Markup('<option value="{}"{}>{}</option>').format(
            value,
            Markup(" selected") if value in picked else Markup(""),
            _text_only(option.get("text")),
        )

    parts: list[Markup] = []
    if placeholder:
        parts.append(
            Markup('<option value=""{}>{}</option>').format(
                Markup("") if picked else Markup(" selected"),
                _text_only(element.get("placeholder")) or "Select an item",
            )
        )
    parts += [option_html(o) for o in element.get("options") or [] if isinstance(o, Mapping)]
    for group in element.get("option_groups") or []:
        if isinstance(group, Mapping):
            inner = Markup("").join(
                option_html(o) for o in group.get("options") or [] if isinstance(o, Mapping)
            )
            parts.append(
                Markup('<optgroup label="{}">{}</optgroup>').format(
                    _text_only(group.get("label")), inner
                )
            )
    return Markup("").join(parts)


def _text_only(obj: Any) -> str:
    """A text object's text without markup (an <option> holds text only)."""
    if not isinstance(obj, Mapping):
        return ""
    text = str(obj.get("text") or "")
    return emojify(unescape_mrkdwn(text) if obj.get("type") == "mrkdwn" else text)


def input_element_html(
    element: Mapping[str, Any], index: int, names: Directory = PLAIN, *, required: bool = False
) -> Markup:
    """The field of a modal's input block, named "b<index>"."""
    kind = str(element.get("type") or "")
    name = f"b{index}"
    need = Markup(" required") if required else Markup("")
    placeholder = _text_only(element.get("placeholder"))
    if kind in _TEXT_INPUTS:
        initial = str(element.get("initial_value") or "")
        limit = element.get("max_length")
        extra = (
            Markup(' maxlength="{}"').format(int(limit)) if isinstance(limit, int) else Markup("")
        )
        if kind == "number_input" and not element.get("is_decimal_allowed"):
            extra += Markup(' step="1"')
        if kind == "plain_text_input" and element.get("multiline"):
            return Markup(
                '<textarea class="sb-field-input" id="{}" name="{}" rows="8" placeholder="{}"{}{}>'
                "{}</textarea>"
            ).format(name, name, placeholder, extra, need, initial)
        return Markup(
            '<input class="sb-field-input" id="{}" name="{}" type="{}" value="{}" '
            'placeholder="{}"{}{}>'
        ).format(name, name, _TEXT_INPUTS[kind], initial, placeholder, extra, need)
    if kind in ("static_select", "multi_static_select"):
        multiple = kind == "multi_static_select"
        return Markup('<select class="sb-field-input" id="{}" name="{}"{}{}>{}</select>').format(
            name,
            name,
            Markup(" multiple") if multiple else Markup(""),
            need,
            _select_options(element, names, placeholder=not multiple),
        )
    if kind in ("radio_buttons", "checkboxes"):
        box = "radio" if kind == "radio_buttons" else "checkbox"
        initial_values = {
            str(o.get("value"))
            for o in [element.get("initial_option"), *(element.get("initial_options") or [])]
            if isinstance(o, Mapping)
        }
        choices = Markup("").join(
            Markup(
                '<label class="sb-choice"><input type="{}" name="{}" value="{}"{}{}> {}{}</label>'
            ).format(
                box,
                name,
                str(o.get("value") or ""),
                Markup(" checked") if str(o.get("value")) in initial_values else Markup(""),
                need if box == "radio" else Markup(""),
                text_object(o.get("text"), names),
                Markup('<span class="sb-hint">{}</span>').format(
                    text_object(o["description"], names)
                )
                if isinstance(o.get("description"), Mapping)
                else Markup(""),
            )
            for o in _options(element)
        )
        return Markup('<div class="sb-choices" id="{}">{}</div>').format(name, choices)
    if kind in ("datepicker", "timepicker"):
        initial = str(element.get("initial_date" if kind == "datepicker" else "initial_time") or "")
        return Markup(
            '<input class="sb-field-input" id="{}" name="{}" type="{}" value="{}"{}>'
        ).format(name, name, "date" if kind == "datepicker" else "time", initial, need)
    directory = _DIRECTORY_SELECTS.get(kind)
    if directory is not None:
        field_name, multiple = directory
        people = field_name in ("user",)
        entries = names.users if people else names.conversations
        initial_keys = (
            ("initial_users",)
            if people and multiple
            else ("initial_user",)
            if people
            else ("initial_conversations", "initial_channels")
            if multiple
            else ("initial_conversation", "initial_channel")
        )
        chosen: set[str] = set()
        for key in initial_keys:
            value = element.get(key)
            chosen.update(
                value if isinstance(value, list) else [value] if isinstance(value, str) else []
            )
        options = Markup("").join(
            Markup('<option value="{}"{}>{}</option>').format(
                entry_id, Markup(" selected") if entry_id in chosen else Markup(""), label
            )
            for entry_id, label in entries
        )
        if not multiple:
            options = (
                Markup('<option value=""{}>{}</option>').format(
                    Markup("") if chosen else Markup(" selected"), placeholder or "Select…"
                )
                + options
            )
        return Markup('<select class="sb-field-input" id="{}" name="{}"{}{}>{}</select>').format(
            name, name, Markup(" multiple") if multiple else Markup(""), need, options
        )
    return Markup('<span class="sb-unknown">[{} input]</span>').format(kind or "untyped")


# type → (what it selects, whether several)
_DIRECTORY_SELECTS: Final = {
    "users_select": ("user", False),
    "multi_users_select": ("user", True),
    "conversations_select": ("conversation", False),
    "multi_conversations_select": ("conversation", True),
    "channels_select": ("channel", False),
    "multi_channels_select": ("channel", True),
}


# --------------------------------------------------------------------------------------------
# Modals


def modal_html(view_id: str, definition: Mapping[str, Any], names: Directory = PLAIN) -> Markup:
    """A modal: its title, blocks, inputs and its Close and Submit buttons."""
    submit = definition.get("submit")
    close = definition.get("close")
    return Markup(
        '<form class="sb-modal" data-view-id="{}" novalidate>'
        '<div class="sb-modal-head"><span class="sb-modal-title">{}</span>'
        '<button type="button" class="sb-modal-x" data-close="all" aria-label="Close">✕</button>'
        '</div><div class="sb-modal-body" data-container="view" data-view-id="{}">{}</div>'
        '<div class="sb-modal-foot"><button type="button" class="sb-btn" data-close="one">{}'
        "</button>{}</div></form>"
    ).format(
        view_id,
        text_object(definition.get("title"), names),
        view_id,
        blocks_html(definition.get("blocks"), names),
        text_object(close, names) if isinstance(close, Mapping) else "Cancel",
        Markup('<button type="submit" class="sb-btn sb-btn-primary">{}</button>').format(
            text_object(submit, names)
        )
        if isinstance(submit, Mapping)
        else Markup(""),
    )


def state_values(
    blocks: Any, form: Mapping[str, Sequence[str]]
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, str]]:
    """Slack's `state.values` of a modal from its submitted form, and the errors Slack's
    client shows before sending anything (a required field left empty, a bad email)."""
    values: dict[str, dict[str, dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    for index, block in enumerate(blocks if isinstance(blocks, list) else []):
        if not isinstance(block, Mapping) or block.get("type") != "input":
            continue
        element = block.get("element")
        if not isinstance(element, Mapping):
            continue
        block_id = block_id_of(block, index)
        action_id = str(element.get("action_id") or f"sb-action-{index}")
        raw = [v for v in form.get(f"b{index}", []) if v != ""]
        try:
            state = _element_state(element, raw)
        except ValueError as bad:
            errors[block_id] = str(bad)
            continue
        if not raw and not block.get("optional"):
            errors[block_id] = "Please fill out this field."
        values[block_id] = {action_id: state}
    return values, errors


def _element_state(element: Mapping[str, Any], raw: Sequence[str]) -> dict[str, Any]:
    kind = str(element.get("type") or "")
    first = raw[0] if raw else None
    if kind in _TEXT_INPUTS:
        if (
            first is not None
            and kind == "email_text_input"
            and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", first)
        ):
            raise ValueError("Please enter a valid email address.")
        if first is not None and kind == "number_input":
            try:
                float(first) if element.get("is_decimal_allowed") else int(first)
            except ValueError:
                raise ValueError("Please enter a number.") from None
        return {"type": kind, "value": first}
    if kind in ("static_select", "radio_buttons"):
        return {"type": kind, "selected_option": _pick(element, raw[:1])[0] if raw else None}
    if kind in ("checkboxes", "multi_static_select"):
        return {"type": kind, "selected_options": _pick(element, raw)}
    if kind == "datepicker":
        if first is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", first):
            raise ValueError("Please enter a date.")
        return {"type": kind, "selected_date": first}
    if kind == "timepicker":
        if first is not None and not re.fullmatch(r"\d{2}:\d{2}", first):
            raise ValueError("Please enter a time.")
        return {"type": kind, "selected_time": first}
    directory = _DIRECTORY_SELECTS.get(kind)
    if directory is not None:
        what, multiple = directory
        if multiple:
            return {"type": kind, f"selected_{what}s": list(raw)}
        return {"type": kind, f"selected_{what}": first}
    raise ValueError(f"the console cannot fill a {kind or 'untyped'} input")


def _pick(element: Mapping[str, Any], chosen: Sequence[str]) -> list[dict[str, Any]]:
    by_value = {str(o.get("value")): dict(o) for o in _options(element)}
    missing = [v for v in chosen if v not in by_value]
    if missing:
        raise ValueError(f"{missing[0]!r} is not one of the options")
    return [by_value[v] for v in chosen]


def find_element(blocks: Any, loc: str) -> tuple[Mapping[str, Any], str]:
    """The element at `loc` ("b<block>.e<element>" or "b<block>.acc") and its block's id;
    raise LookupError when there is none."""
    found = re.fullmatch(r"b(\d+)\.(?:e(\d+)|acc)", loc)
    if found is None or not isinstance(blocks, list):
        raise LookupError(f"no element at {loc!r}")
    index = int(found.group(1))
    if index >= len(blocks) or not isinstance(blocks[index], Mapping):
        raise LookupError(f"no block {index}")
    block = blocks[index]
    if found.group(2) is None:
        element = block.get("accessory")
    else:
        elements = block.get("elements") or []
        position = int(found.group(2))
        element = elements[position] if position < len(elements) else None
    if not isinstance(element, Mapping):
        raise LookupError(f"no element at {loc!r}")
    return element, block_id_of(block, index)


class ElementChanged(LookupError):
    """The element at a place is not the one the page showed there (or is gone)."""


def find_shown_element(
    blocks: Any,
    loc: str,
    *,
    action_id: str,
    block_id: str,
    button_value: str = "",
    value: str | None = None,
) -> tuple[Mapping[str, Any], str]:
    """The element at `loc`, if it is still the one the page showed: the same `action_id`
    in a block of the same id; for a button, the same value (a card's button binds to the
    draft it was shown with); for a menu, still offering `value`. Raise ElementChanged
    otherwise: a click must never land on whatever element moved into that place."""
    try:
        element, found_block = find_element(blocks, loc)
    except LookupError as gone:
        raise ElementChanged(str(gone)) from None
    found_action = str(element.get("action_id") or "")
    if (found_action, found_block) != (action_id, block_id):
        raise ElementChanged(
            f"{loc} is now {found_action or 'an element'} in block {found_block},"
            f" not {action_id or 'an element'} in block {block_id}"
        )
    if element.get("type") == "button" and str(element.get("value") or "") != button_value:
        raise ElementChanged(f"{found_action} now carries another value")
    if value is not None and value not in {str(o.get("value")) for o in _options(element)}:
        raise ElementChanged(f"{found_action} no longer offers {value!r}")
    return element, found_block
