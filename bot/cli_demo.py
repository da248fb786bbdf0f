"""`salesbot demo`: the whole product, unattended, against the sandbox's stand-ins.

It starts the sandbox in this process on a fresh SQLite database (or `--database-url`),
serves the app on a loopback port with its background work running, and then does what a
rep and their contacts would do, through the same doors they use: a signed `/campaign
launch` from Slack, clicks on the cards (one edited through the real Edit modal, one
rejected through its modal), the emails checked in the Gmail stand-in, a reply of every kind
of `sandbox/sample_replies.py` delivered into the rep's mailbox with Gmail's signed push, the
sandbox clock moved through the cadence (day 4, 10 and 21) so that follow-ups come due,
`/digest now`, then the seeded Zillow review's drafted response approved in #reputation and
the LinkedIn post's content card (due once the clock passed its morning) marked Done in the
rep's DM. Each step prints one line; a summary says what came of every reply.

Exit code 0 when every step did what it should; 1 with the step that failed and why.
"""

from __future__ import annotations

import json
import secrets
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from bot.sandbox import Sandbox
from bot.settings import Settings
from handlers.slack.ids import ActionId, BlockId, CallbackId
from sandbox.mail import deliver_and_push
from sandbox.sample_replies import BOUNCE, SAMPLES, SampleReply, build
from sandbox.seed import (
    CADENCE_DAYS,
    REVIEW_CHANNEL_ID,
    REVIEW_CHANNEL_NAME,
    SeedReport,
    business_moment,
)
from sandbox.seed_marketing import REPUTATION_CHANNEL_ID, REPUTATION_CHANNEL_NAME
from sandbox.server import free_port
from sandbox.slack_api import Message, View
from sandbox.slack_user import SlackUser

T = TypeVar("T")

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True)

#: Cards the demo leaves waiting in #sales-review for whoever opens the console next.
LEFT_FOR_THE_CONSOLE = 1
WAIT_SECONDS = 30.0


class DemoFailed(Exception):
    """A step did not do what it should; the message says what was expected and seen."""


@dataclass
class Step:
    """One line of the transcript."""

    title: str
    detail: str = ""
    seconds: float = 0.0
    ok: bool = True


@dataclass
class Transcript:
    """The steps as they happen, one line each."""

    console: Console
    steps: list[Step] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        """Run one step: its line says ✓ with what happened, or ✗ with why not."""
        step = Step(title)
        began = time.monotonic()
        try:
            yield step
        except DemoFailed as exc:
            step.ok, step.detail = False, str(exc)
            raise
        finally:
            step.seconds = time.monotonic() - began
            self.steps.append(step)
            mark = "[green]✓[/green]" if step.ok else "[red]✗[/red]"
            detail = f" — {escape(step.detail)}" if step.detail else ""
            self.console.print(
                f"{mark} {escape(step.title)}{detail} [dim]({step.seconds:.1f} s)[/dim]"
            )


def wait_for(predicate: Callable[[], T | None], *, what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll until `predicate()` gives something truthy; DemoFailed after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def exactly(items: list[T], count: int) -> list[T] | None:
    """`items` when there are exactly `count` of them (a wait's predicate), else None."""
    return items if len(items) == count else None


def at_least(items: list[T], count: int) -> list[T] | None:
    """`items` when there are `count` or more (and some), else None."""
    return items if items and len(items) >= count else None


def demo_command(
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            help="Post cards as fast as they come: no 1 message/s/channel pacing, in Salesbot "
            "or in the Slack stand-in.",
        ),
    ] = False,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Leave the server up afterwards (the console URL is "
            "printed); stop it with Ctrl-C.",
        ),
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(help="Run on this database instead of a fresh temporary SQLite file."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Serve on this port (default: a free one).")
    ] = None,
) -> None:
    """Run the sandbox unattended: launch, review, send, replies of every kind, the cadence
    and the digest, and print what happened."""
    code = run_demo(fast=fast, keep=keep, database_url=database_url, port=port, console=out)
    raise typer.Exit(code)


def run_demo(
    *,
    fast: bool,
    keep: bool,
    database_url: str | None,
    port: int | None,
    console: Console,
) -> int:
    """Run the demo; return the exit code (0 when every step did what it should)."""
    from bot.logs import configure_logging

    configure_logging("ERROR", "text")
    with tempfile.TemporaryDirectory(prefix="salesbot-demo-") as folder:
        transcript = Transcript(console)
        try:
            with _running(fast, database_url, port, Path(folder), transcript) as world:
                _play(world, transcript)
                _summary(world, transcript)
                if keep:
                    console.print(
                        f"The sandbox stays up: console [bold]{world.sandbox.console_url}"
                        f"[/bold], API token {world.sandbox.api_token}. Stop it with Ctrl-C."
                    )
                    _wait_for_interrupt()
                else:
                    console.print(_where_the_data_is(database_url))
        except DemoFailed as exc:
            console.print(f"[red]demo failed:[/red] {escape(str(exc))}")
            return 1
    return 0


def _where_the_data_is(database_url: str | None) -> str:
    """What becomes of the demo's data once it stops (without --keep, its console stops)."""
    fresh = "`salesbot serve` shows the console of a fresh sandbox"
    if database_url is None:
        return (
            "The demo's data was in a temporary database, removed as the demo ends: run it with"
            f" --keep to look around in its console, or --database-url to keep it; {fresh}."
        )
    return f"The demo's data is in {_short_url(database_url)}; {fresh}."


def _wait_for_interrupt() -> None:
    """Wait for Ctrl-C or SIGTERM. The handlers are set here, not left to Python's default:
    a process started with SIGINT ignored (a shell's background job, some test runners)
    inherits the ignore, and would never see its Ctrl-C."""
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        return
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- the world the demo acts in -------------------------------------------------------------


@dataclass
class World:
    """The running sandbox, the app serving it, and who acts in it."""

    sandbox: Sandbox
    settings: Settings
    rep: SlackUser
    api: httpx.Client
    session_factory: Any
    fast: bool
    #: Wakes one of the app's periodic jobs now (by name) instead of at its next round.
    wake: Callable[[str], None] = lambda name: None
    launched_at: datetime | None = None
    job_id: int | None = None
    sent: list[EmailMessage] = field(default_factory=list)
    edited_subject: str = ""
    replies: dict[str, ReplyOutcome] = field(default_factory=dict)
    follow_ups: dict[int, int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def seed(self) -> SeedReport:
        """What the sandbox's organization holds."""
        if self.sandbox.seed is None:
            raise DemoFailed("the sandbox started without its seeded firm")
        return self.sandbox.seed

    @property
    def rep_email(self) -> str:
        """The admin rep's mailbox: the one the campaign's emails leave from."""
        return str(self.sandbox.admin_email)


@dataclass
class ReplyOutcome:
    """What came of one delivered reply."""

    sample: SampleReply
    contact_email: str
    inbound_id: int | None = None
    category: str | None = None
    intent: str | None = None
    decided_by: str | None = None
    handled: list[str] = field(default_factory=list)


@contextmanager
def _running(
    fast: bool, database_url: str | None, port: int | None, folder: Path, transcript: Transcript
) -> Iterator[World]:
    from bot.app import build_app, build_services
    from bot.sandbox import SANDBOX_SIGNING_SECRET, mount_sandbox_console, start_sandbox
    from storage.db import make_engine, make_session_factory
    from storage.migrate import upgrade

    with transcript.step("Start the sandbox") as step:
        url = database_url or f"sqlite:///{folder / 'salesbot-demo.db'}"
        chosen = port or free_port()
        app_url = f"http://127.0.0.1:{chosen}"
        settings = Settings(
            _env_file=None,
            DATABASE_URL=url,
            SALESBOT_SECRET_KEY=secrets.token_urlsafe(32),
            PUBLIC_BASE_URL=app_url,
            SLACK_CLIENT_ID=None,
            SLACK_CLIENT_SECRET=None,
            SALESBOT_CLOCK_FILE="",
            SALESBOT_FAULT_POINTS="",
            OFFLINE_CORRECTIONS_FILE=str(folder / "corrections.jsonl"),
            SLACK_POST_INTERVAL_SECONDS=0 if fast else 1.1,
            WORKER_POLL_SECONDS=0.2,
            # The demo runs the cadence tick itself, after each move of the clock.
            CADENCE_TICK_SECONDS=3600,
            LOG_LEVEL="ERROR",
        )
        try:
            upgrade(url)
        except Exception as exc:
            raise DemoFailed(f"cannot prepare the database {url}: {exc}") from exc
        sandbox = start_sandbox(settings)
        try:
            # Slack lets a channel take about one message a second; --fast lifts it.
            sandbox.slack.rate_limit_per_channel(None if fast else 1.0, burst=3)
            sandbox.app_url = app_url
            settings = sandbox.settings
            app = build_app(settings, services=build_services(settings, clock=sandbox.clock))
            # The console of `salesbot serve`, on this sandbox: --keep leaves it up to look at.
            mount_sandbox_console(app, sandbox)
            server = _serve_with_background(app, chosen)
        except BaseException:
            sandbox.stop()
            raise
        engine = make_engine(url)
        seed = sandbox.seed
        if seed is None:
            raise DemoFailed("the sandbox started without its seeded firm")
        step.detail = (
            f"{app_url}, database {_short_url(url)}; {seed.clients} clients, {seed.contacts}"
            f" contacts, {seed.orders:,} orders; Gmail connected for"
            f" {len(sandbox.connected_mailboxes)} reps"
        )
    api = httpx.Client(
        base_url=app_url,
        headers={"Authorization": f"Bearer {sandbox.api_token}"},
        timeout=15,
    )
    world = World(
        sandbox=sandbox,
        settings=settings,
        rep=SlackUser(
            sandbox.slack,
            app_url=app_url,
            signing_secret=SANDBOX_SIGNING_SECRET,
            user_id=sandbox.admin_user_id,
        ),
        api=api,
        session_factory=make_session_factory(engine),
        fast=fast,
        wake=app.state.runtime.scheduler.wake,
    )
    try:
        yield world
    finally:
        api.close()
        server.stop()
        engine.dispose()
        sandbox.stop()


def _short_url(url: str) -> str:
    return url if "@" not in url else url.split("@", 1)[1]


@dataclass
class _Server:
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _serve_with_background(app: Any, port: int) -> _Server:
    """Serve the app with its lifespan on, so that its background work runs (the drafting
    and posting workers, the outbox, the inbound sync and pipeline, the scheduler)."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"salesbot-demo-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DemoFailed(f"the app did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    return _Server(server, thread)


# --- what the demo does ---------------------------------------------------------------------


def _play(world: World, transcript: Transcript) -> None:
    campaign = world.seed.campaign_name
    with transcript.step(f'/campaign launch "{campaign}"') as step:
        earlier = _campaign_job(world)
        if earlier is not None:
            raise DemoFailed(
                f"this database already ran the demo's campaign (job #{earlier['id']}): give an"
                " empty database, or leave --database-url out for a fresh one"
            )
        world.launched_at = world.sandbox.clock.now()
        ack = world.rep.command("/campaign", f'launch "{campaign}"', channel_id=REVIEW_CHANNEL_ID)
        if not ack.ok:
            raise DemoFailed(f"the app answered the command with HTTP {ack.status}: {ack.text}")
        job = wait_for(lambda: _campaign_job(world), what="the launched job")
        world.job_id = int(job["id"])
        step.detail = f"job #{world.job_id} planned; drafting"
    with transcript.step(f"Cards posted to #{REVIEW_CHANNEL_NAME}") as step:
        job = wait_for(
            lambda: _drafted(world),
            what="every card to be drafted",
            timeout=60,
        )
        expected = int(job["cards_created"])
        cards = wait_for(
            lambda: exactly(_open_cards(world), expected),
            what=f"{expected} card messages in #{REVIEW_CHANNEL_NAME}",
            timeout=60 if world.fast else 30 + 2 * expected,
        )
        world.counts["cards"] = len(cards)
        step.detail = f"{len(cards)} cards, one per loan officer of a stale lender"
    if len(cards) < len(SAMPLES) + 2 + LEFT_FOR_THE_CONSOLE:
        raise DemoFailed(
            f"{len(cards)} cards are too few for {len(SAMPLES)} kinds of reply, an edit and a"
            " rejection"
        )
    edited, rejected, *rest = cards
    to_approve = rest[: len(rest) - LEFT_FOR_THE_CONSOLE]
    with transcript.step("Edit a card through its Edit modal, and send it") as step:
        step.detail = _edit(world, edited)
    with transcript.step("Reject a card with a reason") as step:
        step.detail = _reject(world, rejected)
    with transcript.step(f"Approve {len(to_approve)} cards") as step:
        for card in to_approve:
            _click(world, card, ActionId.APPROVE)
        step.detail = f"{LEFT_FOR_THE_CONSOLE} left in #{REVIEW_CHANNEL_NAME} for the console"
    with transcript.step("Emails in the rep's Gmail (stand-in)") as step:
        expected_sent = len(to_approve) + 1
        world.sent = wait_for(
            lambda: exactly(_sent(world), expected_sent),
            what=f"{expected_sent} emails sent from {world.rep_email}",
        )
        _check_sent(world)
        world.counts["sent"] = len(world.sent)
        step.detail = (
            f"{len(world.sent)} sent from {world.rep_email}, each with List-Unsubscribe; the"
            " edited one as edited"
        )
    with transcript.step(f"Deliver {len(SAMPLES)} replies, one of every kind") as step:
        _deliver_replies(world)
        step.detail = ", ".join(s.key for s in SAMPLES)
    with transcript.step("Every reply read and acted on") as step:
        _await_replies(world)
        step.detail = f"{len(world.replies)} processed"
    with transcript.step(f"/digest now in #{REVIEW_CHANNEL_NAME}") as step:
        step.detail = _digest(world)
    for day in CADENCE_DAYS[1:]:
        with transcript.step(f"Move the clock to day {day} and run the cadence") as step:
            step.detail = _cadence_day(world, day)
    with transcript.step(
        f"Approve a review's drafted response in #{REPUTATION_CHANNEL_NAME}"
    ) as step:
        step.detail = _review_response(world)
    with transcript.step("Mark the LinkedIn post's content card Done") as step:
        step.detail = _content_done(world)


def _campaign_job(world: World) -> dict[str, Any] | None:
    jobs = _get(world, "/api/agent/jobs")
    found = [j for j in jobs if j.get("kind", "campaign") == "campaign"]
    return found[0] if found else None


def _job(world: World) -> dict[str, Any]:
    return dict(_get(world, f"/api/agent/jobs/{world.job_id}"))


def _drafted(world: World) -> dict[str, Any] | None:
    """The job once planned and every one of its cards drafted."""
    job = _job(world)
    return job if job["total_tasks"] and job["cards_created"] == job["total_tasks"] else None


def _get(world: World, path: str, **params: Any) -> Any:
    answer = world.api.get(path, params=params)
    if answer.status_code != 200:
        raise DemoFailed(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()


def _element(message: Message, action_id: str) -> tuple[dict[str, Any], str] | None:
    for block in message.blocks or []:
        elements: list[Any] = list(block.get("elements") or [])
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element, str(block.get("block_id", ""))
    return None


def _open_cards(world: World, channel: str = REVIEW_CHANNEL_ID) -> list[Message]:
    return [m for m in world.sandbox.slack.messages(channel) if _element(m, ActionId.APPROVE)]


def _click(world: World, message: Message, action_id: str) -> None:
    found = _element(message, action_id)
    if found is None:
        raise DemoFailed(f"card {message.ts} has no {action_id} button")
    element, block_id = found
    ack = world.rep.click(
        element, block_id=block_id, channel_id=message.channel, message_ts=message.ts
    )
    if not ack.ok:
        raise DemoFailed(f"the app answered a {action_id} click with HTTP {ack.status}")


def _opened_view(world: World, before: int, callback_id: str) -> View:
    def opened() -> View | None:
        views = world.sandbox.slack.views[before:]
        return next((v for v in views if v.callback_id == callback_id), None)

    return wait_for(opened, what=f"the {callback_id} modal to open")


def _edit(world: World, message: Message) -> str:
    before = len(world.sandbox.slack.views)
    _click(world, message, ActionId.EDIT)
    view = _opened_view(world, before, CallbackId.EDIT_CARD)
    subject = _initial(view, BlockId.SUBJECT)
    body = _initial(view, BlockId.BODY)
    if not subject or not body:
        raise DemoFailed("the Edit modal did not show the draft's subject and body")
    new_subject = f"{subject} (and a rush slot this week)"
    new_body = body.replace(
        "Could I send over",
        "I also held a rush inspection slot this Thursday for your team. Could I send over",
        1,
    )
    world.edited_subject = new_subject
    ack = world.rep.submit(
        view,
        {
            BlockId.SUBJECT: {
                ActionId.SUBJECT_INPUT: {"type": "plain_text_input", "value": new_subject}
            },
            BlockId.BODY: {ActionId.BODY_INPUT: {"type": "plain_text_input", "value": new_body}},
            BlockId.OPTIONS: {
                ActionId.APPROVE_AFTER_EDIT: {
                    "type": "checkboxes",
                    "selected_options": [
                        {
                            "text": {"type": "plain_text", "text": "Approve and send it now"},
                            "value": "approve",
                        }
                    ],
                }
            },
        },
    )
    if not ack.ok or (ack.json or {}).get("response_action") == "errors":
        raise DemoFailed(f"the Edit modal refused the submission: {ack.text[:300]}")
    wait_for(
        lambda: "edited" in json.dumps(_current(world, message).blocks).lower(),
        what="the edited card's message to say so",
    )
    return f"subject now “{new_subject}”, approved from the modal"


def _reject(world: World, message: Message) -> str:
    before = len(world.sandbox.slack.views)
    _click(world, message, ActionId.REJECT)
    view = _opened_view(world, before, CallbackId.REJECT_CARD)
    reason = "Wrong contact: moved to underwriting"
    ack = world.rep.submit(
        view,
        {BlockId.REASON: {ActionId.REASON_INPUT: {"type": "plain_text_input", "value": reason}}},
    )
    if not ack.ok:
        raise DemoFailed(f"the Reject modal refused the submission: HTTP {ack.status}")
    wait_for(
        lambda: "Rejected" in json.dumps(_current(world, message).blocks, ensure_ascii=False),
        what="the rejected card's message to say so",
    )
    return f"“{reason}”; its contact gets no follow-up"


def _current(world: World, message: Message) -> Message:
    return world.sandbox.slack.message(message.channel, message.ts)


def _initial(view: View, block_id: str) -> str:
    for block in view.blocks:
        if block.get("block_id") == block_id:
            return str((block.get("element") or {}).get("initial_value") or "")
    return ""


def _sent(world: World) -> list[EmailMessage]:
    parsed = []
    for sent in world.sandbox.google.gmail.sent(world.rep_email):
        message = BytesParser(policy=policy.default).parsebytes(sent.raw)
        assert isinstance(message, EmailMessage)
        parsed.append(message)
    return parsed


def _check_sent(world: World) -> None:
    subjects = [str(m["Subject"]) for m in world.sent]
    if world.edited_subject not in subjects:
        raise DemoFailed(f"the edited email is not among those sent: {subjects[:3]} ...")
    missing = [str(m["To"]) for m in world.sent if not m["List-Unsubscribe"]]
    if missing:
        raise DemoFailed(f"emails sent without a List-Unsubscribe header: {missing[:3]}")


def _deliver_replies(world: World) -> None:
    # One reply per sent email, in the order they went out; the last few get no answer and
    # go on with their cadence.
    for sample, email in zip(SAMPLES, world.sent, strict=False):
        to = email["To"].addresses[0]
        raw = build(
            sample.key,
            contact_email=to.addr_spec,
            contact_name=to.display_name or to.username,
            rep_email=world.rep_email,
            subject=str(email["Subject"]),
            in_reply_to=str(email["Message-ID"]),
            at=world.sandbox.clock.now(),
            rep_name=str(email["From"].addresses[0].display_name or ""),
        )
        delivered = deliver_and_push(
            world.sandbox.google,
            mailbox=world.rep_email,
            raw=raw,
            app_url=world.sandbox.app_url,
            audience=world.settings.PUBSUB_AUDIENCE or "",
        )
        if not delivered.accepted:
            raise DemoFailed(
                f"the push endpoint answered {delivered.push_status} to the {sample.key} reply"
            )
        world.replies[sample.key] = ReplyOutcome(sample=sample, contact_email=to.addr_spec)


def _await_replies(world: World) -> None:
    def settled() -> list[dict[str, Any]] | None:
        found = _get(world, "/api/inbound/emails", limit=100)
        done = [e for e in found if e["status"] in ("processed", "failed")]
        return done if len(done) >= len(world.replies) and len(found) == len(done) else None

    emails = wait_for(settled, what=f"{len(world.replies)} replies to be processed", timeout=60)
    by_sender = {e["from_email"]: e for e in emails}
    for outcome in world.replies.values():
        sender = (
            "mailer-daemon@googlemail.com"
            if outcome.sample.detected == BOUNCE
            else outcome.contact_email
        )
        summary = by_sender.get(sender)
        if summary is None:
            raise DemoFailed(f"no inbound email from {sender} ({outcome.sample.key})")
        if summary["status"] != "processed":
            raise DemoFailed(
                f"the {outcome.sample.key} reply was not processed: {summary.get('error')}"
            )
        outcome.inbound_id = int(summary["id"])
        outcome.category = summary["category"]
        outcome.intent = summary["intent"]
        outcome.decided_by = summary["decided_by"]
    # Cards, opt-outs and pauses follow the pipeline's commit (cards are drafted and posted by
    # the workers): wait until every reply shows what its kind must lead to.
    problems: list[str] = []

    def handled() -> bool:
        problems[:] = _check_replies(world)
        return not problems

    try:
        wait_for(handled, what="every reply to be handled")
    except DemoFailed:
        raise DemoFailed(
            "replies not handled as their kind must be: " + " | ".join(problems)
        ) from None


def _check_replies(world: World) -> list[str]:
    """Say how each reply was handled, from what the database holds; return the replies not
    handled the way their kind must be."""
    from storage import models as m

    with world.session_factory() as session:
        contacts = {
            c.email: c
            for c in session.scalars(
                select(m.Contact).where(
                    m.Contact.email.in_([o.contact_email for o in world.replies.values()])
                )
            )
        }
        ids = [o.inbound_id for o in world.replies.values() if o.inbound_id]
        cards = session.scalars(select(m.Card).where(m.Card.inbound_email_id.in_(ids))).all()
        emails = {
            e.id: e
            for e in session.scalars(
                select(m.InboundEmail).where(
                    m.InboundEmail.id.in_([o.inbound_id for o in world.replies.values()])
                )
            )
        }
        enrollments = {
            e.contact_id: e
            for e in session.scalars(
                select(m.Enrollment).where(m.Enrollment.job_id == world.job_id)
            )
        }
        referred = session.scalars(
            select(m.Contact).where(m.Contact.email.like("jane.ortiz@%"))
        ).all()
    card_of = {int(c.inbound_email_id or 0): c for c in cards}
    problems: list[str] = []
    for key, outcome in world.replies.items():
        contact = contacts.get(outcome.contact_email)
        email = emails.get(outcome.inbound_id or 0)
        card = card_of.get(outcome.inbound_id or 0)
        handled: list[str] = []
        if card is not None:
            where = "posted" if card.slack_message_ts else "not posted"
            handled.append(f"{card.type.replace('_', ' ')} card ({where})")
        if email is not None and email.injection_attempt:
            handled.append("flagged: tried to instruct the model")
        if contact is not None and contact.opted_out_at is not None:
            handled.append("contact opted out")
        if contact is not None and contact.email_status != "valid":
            handled.append(f"address marked {contact.email_status}")
        if contact is not None and contact.paused_until is not None:
            handled.append(f"contact paused until {contact.paused_until:%b %d, %Y}")
        enrollment = enrollments.get(contact.id) if contact is not None else None
        if enrollment is not None and enrollment.status == "stopped":
            handled.append(f"cadence stopped ({enrollment.stop_reason})")
        elif enrollment is not None and enrollment.status == "paused":
            until = enrollment.paused_until
            handled.append(f"cadence paused until {until:%b %d}" if until else "cadence paused")
        if key == "referral" and referred:
            handled.append(f"{referred[0].email} added (tagged {', '.join(referred[0].tags)})")
        if not handled:
            handled.append("recorded; no action needed")
        needs = {
            "unsubscribe": contact is not None and contact.opted_out_at is not None,
            "bounce": contact is not None and contact.email_status == "bounced",
            "out_of_office": card is None
            and enrollment is not None
            and enrollment.status == "paused",
            "injection": email is not None and email.injection_attempt and card is not None,
            "referral": bool(referred),
            "positive": card is not None and card.slack_message_ts is not None,
            "meeting": card is not None and card.slack_message_ts is not None,
            "question": card is not None and card.slack_message_ts is not None,
            "amc_order": card is not None and card.slack_message_ts is not None,
            "complaint": card is not None and card.slack_message_ts is not None,
        }
        outcome.handled = handled
        if not needs.get(key, True):
            problems.append(f"{key}: {'; '.join(handled)}")
    world.counts["reply cards"] = sum(
        1 for o in world.replies.values() if card_of.get(o.inbound_id or 0)
    )
    return problems


def _cadence_day(world: World, day: int) -> str:
    assert world.launched_at is not None
    # An hour after the morning the step before went out (its gap counts from that send);
    # a weekend or a holiday in the way moves it to the next business morning.
    target = business_moment(world.launched_at + timedelta(days=day)) + timedelta(hours=1)
    before = {m.ts for m in _open_cards(world)}
    report: dict[str, Any] = {}
    for _ in range(5):
        now = world.sandbox.clock.now()
        if target > now:
            world.sandbox.clock.advance(target - now)
        report = _tick(world)
        if report["ran"] or not report["deferred"]:
            break
        target = business_moment(target + timedelta(days=1)) + timedelta(hours=1)
    new: list[Message] = []
    if report["ran"]:
        due = int(report["ran"])
        new = wait_for(
            lambda: at_least([m for m in _open_cards(world) if m.ts not in before], due),
            what=f"the {due} day {day} follow-up cards",
        )
    for card in new:
        _click(world, card, ActionId.APPROVE)
    sent_before = len(world.sent)
    if new:
        world.sent = wait_for(
            lambda: exactly(_sent(world), sent_before + len(new)),
            what=f"the {len(new)} day {day} follow-ups to be sent",
        )
    world.follow_ups[day] = len(new)
    world.counts["sent"] = len(world.sent)
    world.counts["cards"] += len(new)
    waiting = ", ".join(f"{reason}: {n}" for reason, n in sorted(report["reasons"].items()))
    return (
        f"{world.sandbox.clock.now():%a %b %d %H:%M} UTC; {report['ran']} due, approved and"
        f" sent in the first email's thread; {report['stopped']} stopped, {report['paused']}"
        f" paused" + (f" ({waiting})" if waiting else "")
    )


def _tick(world: World) -> dict[str, Any]:
    for _ in range(20):
        answer = world.api.post("/api/agent/cadence/execute")
        if answer.status_code == 200:
            return dict(answer.json())
        if answer.status_code != 409:
            raise DemoFailed(f"the cadence tick answered {answer.status_code}: {answer.text[:300]}")
        time.sleep(0.25)
    raise DemoFailed("the cadence tick stayed busy in another worker")


def _digest(world: World) -> str:
    before = {m.ts for m in world.sandbox.slack.messages(REVIEW_CHANNEL_ID)}

    def digest() -> Message | None:
        for message in world.sandbox.slack.messages(REVIEW_CHANNEL_ID):
            if message.ts not in before and message.text.startswith("Engagement digest"):
                return message
        return None

    ack = world.rep.command("/digest", "now", channel_id=REVIEW_CHANNEL_ID)
    if not ack.ok:
        raise DemoFailed(f"the app answered /digest now with HTTP {ack.status}")
    posted = wait_for(digest, what="the digest in #sales-review")
    world.counts["digests"] += 1
    return f"“{posted.text[:140]}”"


def _says(message: Message, words: str) -> bool:
    """True when the message's text or blocks hold `words`."""
    return words in message.text or words in json.dumps(message.blocks, ensure_ascii=False)


def _review_response(world: World) -> str:
    """The seeded 2-star Zillow review's drafted response, approved with its button."""

    def card() -> Message | None:
        found = [
            m
            for m in world.sandbox.slack.messages(REPUTATION_CHANNEL_ID)
            if _element(m, ActionId.REVIEW_APPROVE) and _says(m, "Zillow review")
        ]
        return found[0] if found else None

    zillow = wait_for(card, what=f"the Zillow review's response card in #{REPUTATION_CHANNEL_NAME}")
    _click(world, zillow, ActionId.REVIEW_APPROVE)
    wait_for(
        lambda: _says(_current(world, zillow), "Response approved"),
        what="the response card to say it was approved",
    )
    responded = _get(world, "/api/reputation/reviews", status="responded")
    if [r["platform"] for r in responded] != ["zillow"]:
        raise DemoFailed(f"the responded reviews are {responded!r}, not the Zillow review")
    return "2★ Zillow review: the response recorded, the review marked responded"


def _content_done(world: World) -> str:
    """The seeded LinkedIn post's card (due since the clock passed its morning) in the
    admin's DM, marked Done with its button."""
    from jobs.content import ContentSweep

    world.wake(ContentSweep.NAME)  # the sweep looks at once instead of at its next round
    dm = world.sandbox.slack.dm_channel_id(world.sandbox.admin_user_id)

    def card() -> Message | None:
        found = [
            m
            for m in world.sandbox.slack.messages(dm)
            if _element(m, ActionId.CONTENT_DONE) and _says(m, "on LinkedIn")
        ]
        return found[0] if found else None

    linkedin = wait_for(card, what="the LinkedIn post's card in the admin's DM")
    _click(world, linkedin, ActionId.CONTENT_DONE)
    wait_for(
        lambda: _says(_current(world, linkedin), "Posted on LinkedIn"),
        what="the content card to say it was posted",
    )
    return "“Post this today on LinkedIn” → ✅ Posted on LinkedIn, marked done"


# --- the summary ----------------------------------------------------------------------------


def _summary(world: World, transcript: Transcript) -> None:
    console = transcript.console
    table = Table(title="Replies: what Salesbot made of each kind", title_justify="left")
    for column in ("kind", "classified", "by", "how it was handled"):
        table.add_column(column, overflow="fold")
    for outcome in world.replies.values():
        classified = " / ".join(x for x in (outcome.category, outcome.intent) if x)
        table.add_row(
            escape(outcome.sample.label),
            escape(classified or "-"),
            escape(outcome.decided_by or "-"),
            escape("; ".join(outcome.handled)),
        )
    # One row a line, however narrow the terminal (the transcript stays greppable).
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    Console(
        file=console.file, width=max(console.width, natural), force_terminal=console.is_terminal
    ).print(table)
    kinds = Counter(o.category or "?" for o in world.replies.values())
    follow = ", ".join(f"day {d}: {n}" for d, n in world.follow_ups.items())
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    console.print(
        f"[bold]Counts[/bold]: {world.counts['cards']} cards, {world.counts['sent']} emails sent,"
        f" {len(world.replies)} replies ({by_kind}),"
        f" {world.counts['reply cards']} reply cards; follow-ups {follow or 'none'}"
    )
    total = time.monotonic() - transcript.started
    console.print(f"[green]All {len(transcript.steps)} steps passed[/green] in {total:.1f} s.")
