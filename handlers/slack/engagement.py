"""`/engagement <email or name>`: a contact's engagement, shown only to who asked.

An exact address names one contact; otherwise the text is the start of a first, last or
full name (or of an address), and several matches are offered as a short list to pick
from. Only the asker's organization's contacts are searched. Registered with the other
slash commands (handlers/slack/commands.py): acked at once, answered after the ack.
"""

from __future__ import annotations

import html
import re
from typing import Any, Final

from slack_bolt import Respond
from slack_sdk import WebClient

from domain.contacts import ContactMatch
from handlers.slack.blocks import (
    MAX_CONTACT_CHOICES,
    contact_choices_message,
    engagement_message,
    no_contact_text,
)
from handlers.slack.common import SlackDeps, answer, resolve_actor, tells_user_on_error
from storage.uow import UnitOfWork

ENGAGEMENT_USAGE: Final = (
    "*Usage of /engagement*\n"
    "• `/engagement &lt;email&gt;` — a contact's lead score, engagement now and its trend, "
    "their latest events and the totals\n"
    "• `/engagement &lt;name&gt;` — the start of a first, last or full name, e.g. "
    "`/engagement maria lo`; several matches are listed to pick from"
)
#: An address has at most 320 characters; a name to search for, fewer.
MAX_QUERY_CHARS: Final = 320

# Slack sends an address typed in a command as `<mailto:a@b.com|a@b.com>`: the label is
# what was typed.
_SLACK_LINK: Final = re.compile(r"<(?:mailto:|https?://)[^|>]*\|([^>]*)>")


def parse_query(text: str | None) -> str:
    """The address or name typed, as typed: Slack's link markup and escapes undone,
    whitespace folded."""
    unlinked = html.unescape(_SLACK_LINK.sub(r"\1", text or ""))
    return " ".join(unlinked.split())


def pick(matches: list[ContactMatch], query: str) -> ContactMatch | None:
    """The one contact meant: the only match, or the only one whose address or whole name
    is what was typed (any case); None when the asker must choose."""
    if len(matches) == 1:
        return matches[0]
    wanted = query.casefold()
    exact = [m for m in matches if wanted in (m.email.casefold(), m.name.casefold())]
    return exact[0] if len(exact) == 1 else None


@tells_user_on_error
def run_engagement(
    deps: SlackDeps,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """Answer `/engagement <email or name>` with the contact's engagement, a list to pick
    from, or how to search."""
    query = parse_query(command.get("text"))
    if query.casefold() in ("", "help"):
        answer(respond, ENGAGEMENT_USAGE)
        return
    if len(query) > MAX_QUERY_CHARS:
        answer(
            respond,
            f"That is too long for an address or a name ({len(query):,} characters; at most "
            f"{MAX_QUERY_CHARS}).\n\n{ENGAGEMENT_USAGE}",
        )
        return
    actor = resolve_actor(deps, body, client)
    message: tuple[str, list[dict[str, Any]]] | None = None
    with UnitOfWork(deps.session_factory) as uow:
        matches = uow.contexts.find_contacts(actor.org_id, query, limit=MAX_CONTACT_CHOICES + 1)
        chosen = pick(matches, query)
        if chosen is not None:
            org_id, contact_id = actor.org_id, chosen.contact_id
            overview = uow.card_details.contact_overview(org_id, contact_id, now=deps.clock.now())
            totals = uow.engagement_views.event_counts(org_id, contact_id)
            message = engagement_message(overview, lead_score=chosen.lead_score, totals=totals)
    # Answered once the unit of work is closed: no session is held over Slack's answer.
    if message is None and matches:
        more = len(matches) > MAX_CONTACT_CHOICES
        message = contact_choices_message(query, matches, more=more)
    if message is None:
        answer(respond, no_contact_text(query))
        return
    text, blocks = message
    answer(respond, text, blocks=blocks)
