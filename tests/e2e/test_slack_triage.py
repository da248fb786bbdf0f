"""`/triage` from Slack: anyone sees the triage channel and how reply cards are routed; an
admin sets it (Slack escapes the channel as `<#C…|name>`) or clears it; a rep is told who
can; garbage gets the usage; a channel Salesbot is not in is set with a warning, an archived
one refused. `/job` shows the replies inbox as what it is and will not cancel it. Commands
are signed as Slack signs them; answers are read from the stand-in's response URLs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from domain.clock import FixedClock
from domain.contacts import UserRole
from storage import models as m
from storage.uow import UnitOfWork
from tests.support.accounts import ensure_user
from tests.support.slack import ServedSlack
from tests.support.slack_app import REP, SlackWorld, slack_world, wait_until

pytestmark = pytest.mark.slow

ADMIN = "U0ANA0001"
ADMIN_EMAIL = "ana@lonestar.example.com"
TRIAGE = "C0TRIAGE01"
OUTSIDE = "C0OUTSIDE1"
ARCHIVED = "C0ARCHIVE1"


@pytest.fixture
def world(
    committed_engine: Engine, served_slack: ServedSlack, clock: FixedClock
) -> Iterator[SlackWorld]:
    with slack_world(committed_engine, served_slack, clock, contacts=1) as built:
        built.slack.add_user(ADMIN, "ana", ADMIN_EMAIL, real_name="Ana Admin")
        built.slack.add_channel(TRIAGE, "replies")
        built.slack.add_channel(OUTSIDE, "sales-floor", is_member=False)
        built.slack.add_channel(ARCHIVED, "old-replies", is_archived=True)
        with built.session_factory() as session:
            ensure_user(session, built.org_id, email=ADMIN_EMAIL, role=UserRole.ADMIN)
            session.commit()
        yield built


def say(world: SlackWorld, text: str, *, command: str = "/triage", user: str = ADMIN) -> str:
    """Send a command as a user; return the one answer it gets."""
    before = len(world.slack.calls("response_url"))
    assert world.command(text, command=command, user=user).status_code == 200
    answers = wait_until(
        lambda: world.slack.calls("response_url")[before:], what=f"answer to {command} {text}"
    )
    assert len(answers) == 1, answers
    return str(answers[0].params["text"])


def stored(world: SlackWorld) -> str | None:
    with world.session_factory() as session:
        return session.scalar(
            select(m.Organization.triage_channel_id).where(m.Organization.id == world.org_id)
        )


def test_triage_shows_no_channel_and_the_routing_order(world: SlackWorld) -> None:
    shown = say(world, "", user=REP)

    assert shown.splitlines()[:5] == [
        "No triage channel is set: `/triage set #channel` (admins).",
        "Reply cards go to the first of:",
        "1. the DM of the rep whose mailbox received the reply (else who launched the campaign)",
        "2. the campaign's review channel",
        "3. the triage channel (none set: `/triage set #channel`)",
    ]
    assert "falls back to the DM of the rep who launched the campaign" in shown


def test_an_admin_sets_the_triage_channel_as_slack_escapes_it_then_clears_it(
    world: SlackWorld,
) -> None:
    said = say(world, f"set <#{TRIAGE}|replies>")

    assert said.splitlines()[:2] == [
        f"✅ Reply cards nobody else takes now go to <#{TRIAGE}>.",
        f"Triage channel: <#{TRIAGE}>",
    ]
    assert "⚠️" not in said
    assert stored(world) == TRIAGE
    assert f"3. the triage channel <#{TRIAGE}>" in say(world, "", user=REP)

    cleared = say(world, "clear")
    assert cleared.startswith("✅ The triage channel is cleared.")
    assert stored(world) is None


def test_a_bare_channel_id_is_taken_and_a_channel_salesbot_is_not_in_is_set_with_a_warning(
    world: SlackWorld,
) -> None:
    said = say(world, f"set {OUTSIDE}")

    assert stored(world) == OUTSIDE
    assert said.splitlines()[-1] == (
        f"⚠️ Salesbot is not in <#{OUTSIDE}>: /invite @Salesbot there so cards can be posted."
    )


def test_an_archived_channel_is_refused_and_the_setting_stays(world: SlackWorld) -> None:
    say(world, f"set <#{TRIAGE}|replies>")

    said = say(world, f"set <#{ARCHIVED}|old-replies>")

    assert said == (
        f"⚠️ <#{ARCHIVED}> is archived: cards cannot be posted there; choose another channel."
    )
    assert stored(world) == TRIAGE


def test_a_rep_cannot_set_or_clear_the_triage_channel_and_is_told_who_can(
    world: SlackWorld,
) -> None:
    refusal = "⚠️ Only an admin can change the triage channel; ask an admin of your organization."

    assert say(world, f"set <#{TRIAGE}|replies>", user=REP) == refusal
    assert say(world, "clear", user=REP) == refusal
    assert stored(world) is None


@pytest.mark.parametrize(
    ("text", "first_line"),
    [
        ("set", "`/triage set` needs a channel, e.g. `/triage set #replies`."),
        (
            "set #no-such-channel",
            "`#no-such-channel` is not a channel I know: pick one from the list Slack offers "
            "as you type `#`.",
        ),
        (
            f"set <#{TRIAGE}|replies> and more",
            f"`&lt;#{TRIAGE}|replies&gt; and more` is not a channel I know: pick one from the "
            "list Slack offers as you type `#`.",
        ),
        ("set <@U0MARIA01>", None),
        ("frobnicate", "I don't know `/triage frobnicate`."),
        ("clear everything", "I don't know `/triage clear everything`."),
        ("help", "*Usage of /triage*"),
    ],
)
def test_garbage_gets_the_usage_and_changes_nothing(
    world: SlackWorld, text: str, first_line: str | None
) -> None:
    said = say(world, text)

    assert "*Usage of /triage*" in said
    if first_line is not None:
        assert said.splitlines()[0] == first_line
    assert stored(world) is None


def test_job_list_shows_the_replies_inbox_as_such_and_it_cannot_be_cancelled(
    world: SlackWorld,
) -> None:
    uow = UnitOfWork(world.session_factory)
    with uow:
        inbox_id = uow.jobs.inbox_job_id(world.org_id, now=datetime.now(UTC))
        uow.commit()

    listed = say(world, "list", command="/job", user=REP)
    refused = say(world, f"cancel {inbox_id}", command="/job")

    assert listed.splitlines()[1] == (
        f"📥 *Replies inbox* (job #{inbox_id}) — the reply cards that answer no campaign; it "
        "runs for ever. `/triage` shows where they are posted."
    )
    assert refused.startswith(f"⚠️ Job #{inbox_id} is the replies inbox")
    with world.session_factory() as session:
        job = session.get(m.Job, inbox_id)
        assert job is not None
        assert job.status == "running"
