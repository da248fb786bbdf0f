"""Text from outside (a contact's name, an email's subject) made safe for Slack's mrkdwn.

Block Kit builders in handlers/slack/blocks.py and the digest renderer in
domain/digest_message.py both escape with these, so a name reads the same everywhere and
no one of them can be made to mention @channel or to forge a link.
"""

from __future__ import annotations

import re
from typing import Final

#: A section's text may hold 3,000 characters; a little is left for what wraps the text.
DEFAULT_LIMIT: Final = 2900

# "@channel", "@here", "@everyone" typed in an email: a word joiner after the @ keeps
# Slack from ever reading them as a mention (escaping already disarms `<!channel>`).
MENTION_WORDS: Final = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
ESCAPES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: str) -> str:
    """Escape text for mrkdwn (Slack's three control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """Text from outside (an email, a contact's name) for mrkdwn: escaped, mentions
    disarmed, and cut so that the escaped text, ellipsis included, has at most `limit`
    characters (escaping lengthens it: an `&` becomes five)."""
    text = MENTION_WORDS.sub("@\u2060", text)
    whole = escape(text)
    if len(whole) <= limit:
        return whole
    out: list[str] = []
    used = 0
    for char in text:
        piece = ESCAPES.get(char, char)
        if used + len(piece) > limit - 1:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out).rstrip() + "…"
