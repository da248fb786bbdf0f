"""`/engagement <email or name>` from Slack: a signed command through the real Bolt app, the
answer read from the stand-in's response URL (ephemeral, as only the asker sees it).

An address (typed, or as Slack links it) shows the contact's header, scores, totals and
latest events newest first with the score after each, as stored; a name matching several
contacts lists them with their addresses; none says how to search; another organization's
contacts are never found; hostile text (too long, mrkdwn, LIKE wildcards) changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from domain.engagement import EngagementEvent, record_engagement
from sandbox.slack_api import message_block_problems
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.builders import make_client, make_contact, make_order, make_org
from tests.support.engagement_data import make_inbound, make_send
from tests.support.slack import ServedSlack
from tests.support.slack_app import SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

E = EngagementEvent
MARIA = "maria@pinnacle.example.com"


@dataclass
class Answer:
    """What `respond()` posted to the command's response URL."""

    text: str
    blocks: list[dict[str, Any]]
    response_type: str

    @property
    def shown(self) -> str:
        """Every mrkdwn text of the blocks, in order (the text when there are none)."""
        if not self.blocks:
            return self.text
        found: list[str] = []
        for block in self.blocks:
            if "text" in block:
                found.append(block["text"]["text"])
            found += [f["text"] for f in block.get("fields", [])]
            found += [e["text"] for e in block.get("elements", [])]
        return "\n".join(found)


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock, contacts=1) as built:
        seed(built, clock)
        yield built


def seed(world: SlackWorld, clock: FixedClock) -> None:
    """Maria Lopez with two sends, a positive and a neutral reply and an order after them;
    Maria Lozano of the same client; a rival organization's contacts of the same names."""
    now = clock.now()
    uow = UnitOfWork(world.session_factory)
    with uow:
        session = uow.session
        org = session.get(m.Organization, world.org_id)
        assert org is not None
        lender = session.scalars(
            select(m.Client).where(
                m.Client.org_id == world.org_id, m.Client.name == "Pinnacle Lending"
            )
        ).one()
        maria = make_contact(
            session,
            org,
            lender,
            email=MARIA,
            first_name="Maria",
            last_name="Lopez",
            title="Loan Officer",
            lead_score=72,
        )
        make_contact(
            session,
            org,
            lender,
            email="mlozano@pinnacle.example.com",
            first_name="Maria",
            last_name="Lozano",
            lead_score=None,
        )
        make_contact(
            session,
            org,
            lender,
            email="eve@pinnacle.example.com",
            first_name="<!channel> *Eve*",
            last_name="<https://evil.example.com|click>",
        )
        rival = make_org(session, name="Rival Appraisals")
        rival_client = make_client(session, rival, name="Rival Lending")
        make_contact(session, rival, rival_client, email=MARIA, first_name="Mariana")
        make_contact(session, rival, rival_client, email="sofia@rival.example.com")
        first = make_send(
            session,
            world.org_id,
            maria,
            sent_at=now - timedelta(days=10),
            campaign_id=world.campaign_id,
            subject="Turn times in TX are down, Maria",
        )
        warm = make_inbound(
            session,
            world.org_id,
            contact_id=maria.id,
            email_send_id=first.id,
            subject="Re: Turn times in TX are down, Maria",
        )
        second = make_send(
            session,
            world.org_id,
            maria,
            sent_at=now - timedelta(days=5),
            campaign_id=world.campaign_id,
            subject="Following up, Maria",
        )
        plain = make_inbound(
            session,
            world.org_id,
            contact_id=maria.id,
            email_send_id=second.id,
            subject="Re: Following up, Maria",
            sentiment="neutral",
        )
        order = make_order(session, org, lender, ordered_at=now - timedelta(days=2))
        events: list[tuple[EngagementEvent, int, dict[str, Any]]] = [
            (E.SENT, 10, {"email_send_id": first.id}),
            (E.POSITIVE_REPLY, 9, {"inbound_email_id": warm.id}),
            (E.SENT, 5, {"email_send_id": second.id}),
            (E.REPLIED, 4, {"inbound_email_id": plain.id, "sentiment": "neutral"}),
            (E.ORDER_AFTER_REPLY, 2, {"detail": {"order_id": order.id}}),
        ]
        for event, days_ago, refs in events:
            record_engagement(
                uow.engagement,
                org_id=world.org_id,
                contact_id=maria.id,
                event=event,
                occurred_at=now - timedelta(days=days_ago),
                **refs,
            )
        uow.commit()


def ask(world: SlackWorld, text: str) -> Answer:
    """Send `/engagement <text>`; return the one answer it gets."""
    before = len(world.slack.calls("response_url"))
    response = world.command(text, command="/engagement")
    assert (response.status_code, response.text) == (200, "")
    calls = wait_until(
        lambda: world.slack.calls("response_url")[before:], what=f"answer to /engagement {text}"
    )
    assert len(calls) == 1, calls
    [call] = calls
    assert call.status == 200, call.response  # the stand-in took its blocks
    blocks = call.params.get("blocks") or []
    assert message_block_problems(blocks) == []
    return Answer(
        text=str(call.params["text"]), blocks=blocks, response_type=call.params["response_type"]
    )


def stored_scores(world: SlackWorld) -> list[float]:
    """The score after each of Maria's events, newest first, as stored."""
    with world.session_factory() as session:
        rows = session.execute(
            select(m.ContactEngagementEvent.score_after)
            .join(m.Contact, m.Contact.id == m.ContactEngagementEvent.contact_id)
            .where(m.Contact.org_id == world.org_id, m.Contact.email == MARIA)
            .order_by(m.ContactEngagementEvent.occurred_at.desc())
        )
        return [float(score) for (score,) in rows]


@pytest.mark.parametrize(
    "typed",
    [MARIA, f"<mailto:{MARIA}|{MARIA}>", "  MARIA@Pinnacle.example.com ", "maria lopez"],
    ids=["address", "as-slack-links-it", "any-case", "full-name"],
)
def test_an_address_or_a_whole_name_shows_the_contacts_engagement(
    world: SlackWorld, typed: str
) -> None:
    answer = ask(world, typed)

    assert answer.response_type == "ephemeral"
    assert answer.blocks[0]["text"]["text"] == (
        "📇 *Maria Lopez* · Loan Officer, Pinnacle Lending\nmaria@pinnacle.example.com"
    )
    fields = [f["text"] for f in answer.blocks[1]["fields"]]
    # The score the contact has now: recording the replies and the order rescored them.
    with world.session_factory() as session:
        score = session.scalars(
            select(m.Contact.lead_score).where(
                m.Contact.org_id == world.org_id, m.Contact.email == MARIA
            )
        ).one()
    assert score is not None
    assert score != 72
    assert fields[0] == f"*Lead score*\n{score}/100"
    assert re.fullmatch(r"\*Engagement now\*\n\d+/100 · (↗ rising|→ steady|↘ falling)", fields[1])
    assert answer.blocks[2]["elements"][0]["text"] == (
        "*Totals* · 2 sent · 2 replies (1 positive, 1 neutral) · 1 order after a reply"
    )
    timeline = answer.blocks[4]["text"]["text"].splitlines()
    assert timeline[0] == "*Latest events*, newest first"
    events = [line.split(" · ", 1)[1].rsplit(" · score ", 1) for line in timeline[1:]]
    assert [what for what, _ in events] == [
        "🧾 Ordered after a reply",
        "💬 Replied (neutral) · _Re: Following up, Maria_",
        "📤 Sent · _Following up, Maria_ (Q4 lender win-back)",
        "👍 Positive reply · _Re: Turn times in TX are down, Maria_",
        "📤 Sent · _Turn times in TX are down, Maria_ (Q4 lender win-back)",
    ]
    assert [int(score) for _, score in events] == [round(s) for s in stored_scores(world)]
    assert answer.text.startswith("Maria Lopez (maria@pinnacle.example.com): engagement ")


@pytest.mark.parametrize("typed", ["maria", "Maria Lo", "MARIA"])
def test_a_name_of_several_contacts_lists_them_with_their_addresses(
    world: SlackWorld, typed: str
) -> None:
    answer = ask(world, typed)

    assert answer.text == f"2 contacts match “{typed}”"
    assert answer.blocks[0]["text"]["text"].splitlines() == [
        f"*Did you mean:* (“{typed}” matches more than one contact)",
        "• *Maria Lopez* — maria@pinnacle.example.com · Pinnacle Lending",
        "• *Maria Lozano* — mlozano@pinnacle.example.com · Pinnacle Lending",
    ]  # the rival's Mariana is not among them


def test_no_match_says_so_and_how_to_search(world: SlackWorld) -> None:
    answer = ask(world, "nobody@nowhere.example.com")

    assert answer.blocks == []
    assert answer.text == (
        "No contact of your organization matches “nobody@nowhere.example.com”. Give their "
        "email address, or the start of a first, last or full name: "
        "`/engagement maria@pinnacle.com`, `/engagement lopez`, `/engagement maria lo`."
    )


@pytest.mark.parametrize("typed", ["sofia@rival.example.com", "mariana", "rival"])
def test_another_organizations_contacts_are_never_found(world: SlackWorld, typed: str) -> None:
    answer = ask(world, typed)

    assert answer.text.startswith(f"No contact of your organization matches “{typed}”.")


def test_a_contact_with_a_hostile_name_is_shown_escaped(world: SlackWorld) -> None:
    answer = ask(world, "eve@pinnacle.example.com")

    assert answer.blocks[0]["text"]["text"] == (
        "📇 *&lt;!channel&gt; *Eve* &lt;https://evil.example.com|click&gt;* · Pinnacle Lending"
        "\neve@pinnacle.example.com"
    )
    assert "<!channel>" not in answer.shown
    assert "<https://evil" not in answer.shown


@pytest.mark.parametrize(
    ("typed", "echoed"),
    [
        ("<!channel> *bold* <https://evil.example.com|click>", "&lt;!channel&gt; *bold* click"),
        ("&lt;!here&gt; @everyone", "&lt;!here&gt; @\u2060everyone"),
        ("%", "%"),
        ("dana_", "dana_"),  # `_` is no wildcard: Dana0 Whitfield is not found
    ],
)
def test_mrkdwn_and_wildcards_in_the_query_find_no_one_and_are_echoed_escaped(
    world: SlackWorld, typed: str, echoed: str
) -> None:
    answer = ask(world, typed)

    assert answer.text.startswith(f"No contact of your organization matches “{echoed}”.")
    assert "<!" not in answer.text


def test_a_very_long_text_is_refused_before_any_search(world: SlackWorld) -> None:
    answer = ask(world, "maria " * 2000)

    assert answer.text.startswith(
        "That is too long for an address or a name (11,999 characters; at most 320)."
    )
    assert "*Usage of /engagement*" in answer.text


@pytest.mark.parametrize("typed", ["", "help"])
def test_no_text_or_help_gets_the_usage(world: SlackWorld, typed: str) -> None:
    assert ask(world, typed).text.startswith("*Usage of /engagement*")
