"""`salesbot cards list|show|approve|reject`: review cards from a terminal or a script.

The same use cases as the Slack buttons (`domain.outreach.review`), with the same rules: the
command acts as a named user of the organization (`--as` an email address or a Slack user
id), and only the rep who launched a card's job, the rep whose mailbox received a reply, or
an admin may decide it. An approval binds to the draft the command read (its fingerprint),
exactly as a click binds to the message it was on, and it sends from the rep's Gmail, so it
needs the Gmail settings of the server. The card's Slack message is updated as a click
updates it when Slack is configured; in sandbox mode Slack is a stand-in inside `salesbot
serve`, out of this process's reach, and the command says the message was left as it was.
`--json` prints one JSON document on standard output for scripts.

Exit codes: 0 done; 1 the card refused (unknown, already decided, not yours); 2 bad input
(an unknown organization or user, settings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli_db import open_database
from bot.settings import Settings, SettingsError, load_settings
from domain.accounts import find_org
from domain.cards import Card, CardState, review_refusal
from domain.contacts import normalize_email
from domain.errors import NotFound, NotPermitted, SalesbotError
from domain.outreach.common import Actor, authorize_card

cards_app = typer.Typer(help="Review cards: list, show, approve, reject.", no_args_is_help=True)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
MAX_LIMIT = 500

OrgOption = Annotated[str, typer.Option("--org", help="Organization slug or id.")]
AsOption = Annotated[
    str,
    typer.Option("--as", help="Act as this user of the organization: email or Slack user id."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class CardsError(Exception):
    """A refusal to print as one line, with the exit code it ends with."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class _Session:
    """What a command works with: the runtime's use cases and the organization."""

    runtime: Any  # bot.app.Runtime
    org_id: int
    org_slug: str

    def actor(self, who: str) -> Actor:
        """The user `who` names (email or Slack id), as the Slack handlers build them."""
        from storage.uow import UnitOfWork

        with UnitOfWork(self.runtime.services.session_factory) as uow:
            if _SLACK_USER_ID.match(who.strip()):
                user = uow.users.find_by_slack_id(self.org_id, who.strip())
            else:
                user = uow.users.find_by_email(self.org_id, normalize_email(who))
        if user is None:
            raise CardsError(
                f"{who} is not a user of {self.org_slug}: give the email address or Slack user"
                f" id of one of its reps (`salesbot org list` shows the admins)",
                2,
            )
        return Actor(
            org_id=self.org_id, user_id=user.id, role=user.role, slack_user_id=user.slack_user_id
        )

    def card(self, card_id: int) -> Card:
        """A card of the organization; CardsError when it has none with this id."""
        from storage.uow import UnitOfWork

        with UnitOfWork(self.runtime.services.session_factory) as uow:
            try:
                return uow.cards.get(self.org_id, card_id)
            except NotFound:
                raise CardsError(
                    f"card {card_id} not found in organization {self.org_slug}"
                ) from None


@contextmanager
def _session(org: str) -> Iterator[_Session]:
    from bot.app import build_runtime
    from storage.uow import UnitOfWork

    settings = _settings()
    engine = open_database(settings.DATABASE_URL)
    engine.dispose()
    runtime = build_runtime(settings)
    try:
        with UnitOfWork(runtime.services.session_factory) as uow:
            try:
                found = find_org(uow.orgs, org)
            except NotFound:
                raise CardsError(
                    f"no organization {org!r}: `salesbot org list` shows them", 2
                ) from None
        yield _Session(runtime=runtime, org_id=found.id, org_slug=found.slug)
    finally:
        runtime.services.engine.dispose()


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise CardsError(str(exc), 2) from None


@contextmanager
def _refusals() -> Iterator[None]:
    """Print a refusal as one line and exit with its code."""
    try:
        yield
    except CardsError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(exc.code) from None
    except (NotFound, NotPermitted) as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(1) from None
    except SalesbotError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(1) from None


# --- list and show --------------------------------------------------------------------------


@cards_app.command("list")
def cards_list(
    org: OrgOption,
    status: Annotated[
        list[CardState] | None,
        typer.Option(help="Only cards in this state (repeat for several)."),
    ] = None,
    job: Annotated[int | None, typer.Option(help="Only this job's cards.")] = None,
    campaign: Annotated[
        str | None, typer.Option(help="Only the cards of this campaign's jobs (name or id).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List an organization's cards, newest job first, each job's cards in order."""
    with _refusals(), _session(org) as session:
        cards = _listed(session, status=status, job=job, campaign=campaign, limit=limit)
        if as_json:
            typer.echo(json.dumps([_card_json(c) for c in cards], default=_jsonable, indent=2))
            return
        if not cards:
            out.print(f"no cards in {session.org_slug} match")
            return
        table = Table(title=f"Cards of {escape(session.org_slug)}")
        table.add_column("id", justify="right")
        for column in ("state", "type", "job", "to", "subject / title", "created"):
            table.add_column(column, overflow="fold")
        for card in cards:
            payload = card.action_payload
            table.add_row(
                str(card.id),
                card.state.value,
                card.type.value,
                str(card.job_id or "-"),
                escape(str(payload.get("to") or "-")),
                escape(str(payload.get("subject") or card.title)),
                f"{card.created_at.astimezone(UTC):%Y-%m-%d %H:%M}",
            )
        Console(width=max(out.width, 160)).print(table)


def _listed(
    session: _Session,
    *,
    status: list[CardState] | None,
    job: int | None,
    campaign: str | None,
    limit: int,
) -> list[Card]:
    from storage.uow import UnitOfWork

    with UnitOfWork(session.runtime.services.session_factory) as uow:
        if job is not None:
            try:
                jobs = [uow.jobs.get(session.org_id, job)]
            except NotFound:
                raise CardsError(
                    f"job {job} not found in organization {session.org_slug}"
                ) from None
        else:
            campaign_id = None
            if campaign is not None:
                found = (
                    uow.campaigns.get(session.org_id, int(campaign))
                    if campaign.isdigit()
                    else uow.campaigns.find_by_name(session.org_id, campaign)
                )
                if found is None:
                    raise CardsError(
                        f"no campaign {campaign!r} in {session.org_slug}: give its name or id"
                    )
                campaign_id = found.id
            jobs = uow.jobs.list(session.org_id, campaign_id=campaign_id, limit=MAX_LIMIT)
        cards: list[Card] = []
        for one in jobs:
            left = limit - len(cards)
            if left <= 0:
                break
            cards += uow.cards.list_for_job(session.org_id, one.id, states=status, limit=left)
    return cards


@cards_app.command("show")
def cards_show(
    card_id: Annotated[int, typer.Argument(help="Card id.")],
    org: OrgOption,
    as_json: JsonOption = False,
) -> None:
    """Show a card: who it goes to, why, the draft in full and its fingerprint."""
    with _refusals(), _session(org) as session:
        card = session.card(card_id)
        if as_json:
            typer.echo(json.dumps(_card_json(card), default=_jsonable, indent=2))
            return
        _print_card(card)


def _print_card(card: Card) -> None:
    payload = card.action_payload
    out.print(f"[bold]card {card.id}[/bold] · {card.type.value} · {card.state.value}")
    out.print(f"title    {escape(card.title)}")
    if card.job_id:
        out.print(f"job      {card.job_id}")
    if payload.get("to"):
        out.print(f"to       {escape(str(payload['to']))}")
    if card.rationale:
        out.print(f"why      {escape(card.rationale)}")
    for label, value in (
        ("blocked", card.blocked_reason),
        ("rejected", card.rejected_reason),
        ("withdrawn", card.withdrawn_reason),
    ):
        if value:
            out.print(f"{label:<8} {escape(value)}")
    if payload.get("subject") or payload.get("body"):
        out.rule()
        out.print(f"Subject: {escape(str(payload.get('subject', '')))}")
        out.print()
        out.print(escape(str(payload.get("body", ""))))
        out.rule()
    if card.draft_fingerprint:
        out.print(f"fingerprint {card.draft_fingerprint} (approve binds to this draft)")


# --- decisions ------------------------------------------------------------------------------


@cards_app.command("approve")
def cards_approve(
    card_id: Annotated[int, typer.Argument(help="Card id.")],
    org: OrgOption,
    who: AsOption,
    fingerprint: Annotated[
        str | None,
        typer.Option(
            help="Approve only if the draft is still the one with this fingerprint (from "
            "`cards show`); without it, the draft as read just before approving."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a card as Approve & send does: the email goes out from the rep's Gmail, once."""
    with _refusals(), _session(org) as session:
        actor = session.actor(who)
        card = session.card(card_id)
        _check(session, actor, card, CardState.APPROVED)
        if card.sends_email and session.runtime.gmail is None:
            raise CardsError(
                "approving sends the email from the rep's Gmail, and this command has no Gmail"
                " settings (GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET). In sandbox mode the"
                " stand-ins live inside `salesbot serve`: approve from its console, /sandbox.",
                2,
            )
        done = session.runtime.outreach.review.approve_card(
            actor, card_id, fingerprint=fingerprint or card.draft_fingerprint
        )
        _report(done, as_json, verb="approved")
        _say_if_slack_is_elsewhere(session)
        if done.state == CardState.BLOCKED:
            raise typer.Exit(1)


@cards_app.command("reject")
def cards_reject(
    card_id: Annotated[int, typer.Argument(help="Card id.")],
    org: OrgOption,
    who: AsOption,
    reason: Annotated[
        str | None, typer.Option(help="Why (shown on the card), e.g. 'wrong contact'.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Reject a card as the Reject modal does; a cadence's email step ends that cadence."""
    with _refusals(), _session(org) as session:
        actor = session.actor(who)
        card = session.card(card_id)
        _check(session, actor, card, CardState.REJECTED)
        done = session.runtime.outreach.review.reject_card(actor, card_id, reason=reason)
        _report(done, as_json, verb="rejected")
        _say_if_slack_is_elsewhere(session)


#: Why, in sandbox mode, a decision from the terminal leaves the card's Slack message as it was.
SANDBOX_MESSAGE_NOTE = (
    "note: the card's Slack message still shows its buttons. In sandbox mode Slack is a"
    " stand-in inside `salesbot serve`, which this command cannot reach; a click on them in"
    " the console is refused with the card's state. With Slack configured, the message is"
    " updated as a click would update it."
)


def _say_if_slack_is_elsewhere(session: _Session) -> None:
    """The review use case updates the card's message through Slack when this process has
    Slack; in sandbox mode it has none (the stand-in lives in `salesbot serve`): say so."""
    if session.runtime.settings.sandbox:
        err.print(escape(SANDBOX_MESSAGE_NOTE))


def _check(session: _Session, actor: Actor, card: Card, to: CardState) -> None:
    """Refuse before acting, in the words Slack uses: not yours, or already decided."""
    from storage.uow import UnitOfWork

    with UnitOfWork(session.runtime.services.session_factory) as uow:
        authorize_card(uow, actor, card)
    refusal = review_refusal(card, to)
    if refusal is not None:
        raise CardsError(f"card {card.id}: {refusal}")


def _report(card: Card, as_json: bool, *, verb: str) -> None:
    if as_json:
        typer.echo(json.dumps(_card_json(card), default=_jsonable, indent=2))
        return
    state = card.state.value.replace("_", " ")
    line = f"card {card.id} {verb}: now {state}"
    if card.state == CardState.BLOCKED and card.blocked_reason:
        line += f" — {card.blocked_reason}"
    if card.rejected_reason:
        line += f" (“{card.rejected_reason}”)"
    out.print(escape(line))


def _card_json(card: Card) -> dict[str, Any]:
    return asdict(card)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)
