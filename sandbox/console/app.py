"""The `/sandbox` console: the stand-in workspace, mailbox and clock in a browser.

`console_router(...)` builds the routes from the sandbox's pieces (it imports nothing of `bot/`):
the page, its panes as HTML fragments that the page polls, and the actions a person takes.
Every command, click and modal submission goes through `SlackUser`, signed and posted to the
app's own `/slack/events`, exactly as Slack would; what the app then does lands in the
stand-ins, where the panes read it.
"""

from __future__ import annotations

import html
import json
import logging
import mimetypes
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from sandbox.console import blockkit
from sandbox.google import GoogleStandIn
from sandbox.mail import compose, deliver_and_push
from sandbox.sample_replies import BOUNCE, MAILER_DAEMON, ORDINARY, SAMPLES, SampleReply, build
from sandbox.slack_api import Ephemeral, Message, SlackStandIn, View
from sandbox.slack_user import APP_ID, EVENTS_PATH, Ack, SlackUser, signed_headers

STATIC_DIR: Final = Path(__file__).parent / "static"
#: The slash commands of manifest.yml (a unit test keeps the two the same).
COMMANDS: Final = (
    "/campaign",
    "/job",
    "/rules",
    "/triage",
    "/engagement",
    "/digest",
    "/content",
)
#: What the clock control offers, in hours: +1 hour, +1 day, +4 days, +1 week.
CLOCK_STEPS: Final = {1: "+1 hour", 24: "+1 day", 96: "+4 days", 168: "+1 week"}
HOME: Final = "home"
#: How many deliveries the inbound form's log keeps (newest first).
DELIVERY_LOG_SIZE: Final = 8
#: Sent by the console's page with every action. A page of another site cannot send a custom
#: header to this origin without a CORS preflight, which is refused, so it cannot drive the
#: sandbox through the evaluator's browser.
ACTION_HEADER: Final = "x-sandbox-console"
#: The answer to a click on an element that is no longer the one the page showed.
CHANGED: Final = "This card changed since you saw it — look again."
#: The host names the console answers to: a page served under any other name (a DNS
#: rebinding attack's domain pointed at 127.0.0.1) is refused before it reads or acts.
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})
#: The path of the panes the page polls (twice a second or so), kept out of the access log.
PANES_PATH: Final = "/sandbox/panes"


class SandboxClock(Protocol):
    """The sandbox's clock: now, how far ahead of the wall clock, and moving it forward."""

    @property
    def offset(self) -> timedelta:
        """How far ahead of the wall clock it runs."""
        ...

    def now(self) -> datetime:
        """The sandbox's now."""
        ...

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by `delta`."""
        ...


@dataclass(frozen=True)
class Suggestion:
    """Something to try, shown where the conversation is still empty: a sentence, and the
    command that the page puts in the command box (in `channel`) when it is clicked."""

    text: str
    command: str = ""
    channel: str = ""


@dataclass(frozen=True)
class Delivery:
    """One email the inbound form delivered, for the form's log."""

    at: datetime
    what: str
    sender: str
    push_status: int
    expect: str
    check: str = ""

    @property
    def accepted(self) -> bool:
        """True when Salesbot took Gmail's push (2xx)."""
        return 200 <= self.push_status < 300


@dataclass
class Console:
    """What the console reads and acts on."""

    slack: SlackStandIn
    google: GoogleStandIn
    clock: SandboxClock
    signing_secret: str
    app_url: Callable[[], str]
    user_id: str
    mailbox: str
    push_audience: str
    wake: Callable[[], None] | None = None
    #: The replies the inbound form offers, built threaded to a sent email.
    samples: Sequence[SampleReply] = SAMPLES
    #: The conversation the page opens on (the rep's DM with the app when empty).
    start_channel: str = ""
    #: What to try first, shown while a conversation is empty.
    suggestions: Sequence[Suggestion] = ()
    deliveries: list[Delivery] = field(default_factory=list)

    def user(self) -> SlackUser:
        """The rep at the keyboard, as Slack sends on their behalf."""
        return SlackUser(
            self.slack,
            app_url=self.app_url(),
            signing_secret=self.signing_secret,
            user_id=self.user_id,
        )

    def directory(self) -> blockkit.Directory:
        """Names of people and conversations, and the URLs of uploaded files."""
        files = self.slack.uploaded_files

        def user_name(user_id: str) -> str:
            try:
                found = self.slack.user(user_id)
            except KeyError:
                return user_id
            return found.real_name or found.name

        def channel_name(channel_id: str) -> str:
            try:
                return self.slack.channel(channel_id).name
            except KeyError:
                return channel_id

        def file_url(key: str) -> str | None:
            for file in files:
                api = file.to_api()
                if key in (file.id, api["url_private"], api["permalink"]) and file.content:
                    return f"/sandbox/files/{file.id}"
            return None

        users = [
            (u.id, u.real_name or u.name)
            for u in self.slack.users(self.slack.default_team.id)
            if not u.is_bot and not u.deleted
        ]
        conversations = [
            (c.id, f"#{c.name}") for c in self.slack.channels() if not (c.is_im or c.is_mpim)
        ]
        return blockkit.Directory(
            user_name=user_name,
            channel_name=channel_name,
            file_url=file_url,
            users=users,
            conversations=conversations,
        )

    # --- what the panes show ---------------------------------------------------------------

    def dm_id(self) -> str:
        """The rep's DM with the bot (it exists in Slack before anything is posted in it)."""
        return self.slack.dm_channel_id(self.user_id)

    def conversations(self) -> list[dict[str, str]]:
        """The left list: the rep's channels, then the DM with the app and other DMs."""
        found: list[dict[str, str]] = []
        dms: list[dict[str, str]] = [{"id": self.dm_id(), "label": "salesbot", "kind": "app"}]
        team = self.slack.default_team.id
        for channel in self.slack.channels():
            if channel.team_id != team or channel.is_archived:
                continue
            if channel.is_im:
                continue  # every DM of the stand-in is the bot's; the rep sees their own
            if channel.is_mpim:
                if self.user_id in (channel.members or ()):
                    dms.append({"id": channel.id, "label": channel.name, "kind": "mpim"})
                continue
            if channel.is_private and self.user_id not in (channel.members or ()):
                continue
            found.append(
                {
                    "id": channel.id,
                    "label": channel.name,
                    "kind": "private" if channel.is_private else "channel",
                }
            )
        return found + dms

    def title_of(self, channel_id: str) -> str:
        """What the messages pane is headed with."""
        if channel_id == HOME:
            return "salesbot · Home"
        if channel_id == self.dm_id():
            return "salesbot"
        try:
            channel = self.slack.channel(channel_id)
        except KeyError:
            return channel_id
        return channel.name if channel.is_mpim else f"#{channel.name}"

    def timeline(
        self,
        channel_id: str,
        thread_ts: str | None = None,
        *,
        names: blockkit.Directory | None = None,
    ) -> list[dict[str, Any]]:
        """A channel's messages (or a thread's) with the rep's ephemerals, oldest first."""
        names = names or self.directory()
        items: list[tuple[tuple[int, int], dict[str, Any]]] = []
        messages = self.slack.messages(channel_id)
        replies: dict[str, list[Message]] = {}
        for message in messages:
            if message.thread_ts and message.thread_ts != message.ts:
                replies.setdefault(message.thread_ts, []).append(message)
        for message in messages:
            in_thread = message.thread_ts is not None and message.thread_ts != message.ts
            if thread_ts is None and in_thread and not message.reply_broadcast:
                continue
            if thread_ts is not None and thread_ts not in (message.ts, message.thread_ts):
                continue
            items.append((_ts_key(message.ts), self._message_item(message, replies, names)))
        for ephemeral in self.slack.ephemerals(channel_id, user=self.user_id):
            if (ephemeral.thread_ts or None) != thread_ts:
                continue
            items.append((_ts_key(ephemeral.message_ts), self._ephemeral_item(ephemeral, names)))
        items.sort(key=lambda pair: pair[0])
        return [item for _, item in items]

    def _message_item(
        self, message: Message, replies: dict[str, list[Message]], names: blockkit.Directory
    ) -> dict[str, Any]:
        thread = replies.get(message.ts, [])
        return {
            "container": "message",
            "channel": message.channel,
            "ts": message.ts,
            "author": self._author(message.user, bot=message.bot_id is not None, names=names),
            "is_app": message.bot_id is not None,
            "time": _clock_time(message.ts),
            "edited": message.edited_ts is not None,
            "body": blockkit.message_html(message.text, message.blocks, message.attachments, names),
            "reply_count": len(thread),
            "last_reply": _clock_time(thread[-1].ts) if thread else "",
            "ephemeral": False,
        }

    def _ephemeral_item(self, ephemeral: Ephemeral, names: blockkit.Directory) -> dict[str, Any]:
        return {
            "container": "ephemeral",
            "channel": ephemeral.channel,
            "ts": ephemeral.message_ts,
            "author": self._author(ephemeral.sender, bot=True, names=names),
            "is_app": True,
            "time": _clock_time(ephemeral.message_ts),
            "edited": False,
            "body": blockkit.message_html(
                ephemeral.text, ephemeral.blocks, ephemeral.attachments, names
            ),
            "reply_count": 0,
            "last_reply": "",
            "ephemeral": True,
        }

    def _author(self, user_id: str, *, bot: bool, names: blockkit.Directory) -> str:
        if bot or user_id == self.slack.default_team.bot_user_id:
            return self.slack.default_team.bot_name
        return names.user_name(user_id)

    def home(self) -> View | None:
        """The App Home the app published for the rep, if it did."""
        try:
            return self.slack.home_view(self.user_id)
        except KeyError:
            return None

    def modal(self) -> View | None:
        """The modal in front of the rep (the top of its stack), if one is open."""
        stack = self.slack.open_modals(self.user_id)
        return stack[-1] if stack else None

    def threads(self) -> list[dict[str, Any]]:
        """The rep's mailbox by thread, the newest activity first."""
        try:
            stored = self.google.gmail.messages(self.mailbox)
        except KeyError:
            return []
        by_thread: dict[str, list[Any]] = {}
        for message in stored:
            by_thread.setdefault(message.thread_id, []).append(message)
        out: list[dict[str, Any]] = []
        for thread_id, messages in by_thread.items():
            parsed = [m.parsed() for m in messages]
            last = messages[-1]
            out.append(
                {
                    "id": thread_id,
                    "subject": str(parsed[0].get("Subject", "(no subject)")),
                    "people": _people(
                        [(p, "SENT" in m.label_ids) for m, p in zip(messages, parsed, strict=True)]
                    ),
                    "count": len(messages),
                    "sent": sum(1 for m in messages if "SENT" in m.label_ids),
                    "received": sum(1 for m in messages if "SENT" not in m.label_ids),
                    # Gmail's snippets are HTML-escaped; the template escapes them once more.
                    "snippet": html.unescape(last.snippet),
                    "seq": last.seq,
                    "messages": [
                        _mail_item(m.id, p, sent="SENT" in m.label_ids)
                        for m, p in zip(messages, parsed, strict=True)
                    ],
                }
            )
        out.sort(key=lambda t: t["seq"], reverse=True)
        return out

    def sent_choices(self) -> list[dict[str, str]]:
        """What the inbound form can answer: every message the rep's mailbox sent, newest
        first, with the contact it went to."""
        choices: list[dict[str, str]] = []
        for sent in reversed(self.google.gmail.sent(self.mailbox)):
            message = sent.message
            name, address = parseaddr(str(message.get("To", "")))
            choices.append(
                {
                    "id": sent.id,
                    "to": address or str(message.get("To", "")),
                    "to_name": name,
                    "from_name": parseaddr(str(message.get("From", "")))[0],
                    "subject": str(message.get("Subject", "")),
                    "message_id": str(message.get("Message-ID", "")),
                }
            )
        return choices

    def sample_choices(self) -> list[dict[str, str]]:
        """The sample replies as the inbound form lists them: key, label, what should follow."""
        return [{"key": s.key, "label": s.label, "expect": _expectation(s)} for s in self.samples]

    def log_delivery(self, delivery: Delivery) -> None:
        """Keep `delivery` at the top of the form's log."""
        self.deliveries.insert(0, delivery)
        del self.deliveries[DELIVERY_LOG_SIZE:]

    def message_counts(self) -> dict[str, int]:
        """How many top-level messages each conversation of the left list holds (the page
        marks the ones that grew since the person last looked)."""
        counts: dict[str, int] = {}
        for conversation in self.conversations():
            try:
                messages = self.slack.messages(conversation["id"])
            except KeyError:
                continue
            counts[conversation["id"]] = sum(
                1 for m in messages if not m.thread_ts or m.thread_ts == m.ts or m.reply_broadcast
            )
        return counts

    def open_home(self) -> Ack:
        """Open the App Home tab: Slack sends the app an `app_home_opened` event."""
        body = json.dumps(
            {
                "token": "deprecated",
                "team_id": self.slack.default_team.id,
                "api_app_id": APP_ID,
                "type": "event_callback",
                "event_id": f"Ev{time.time_ns()}",
                "event_time": int(time.time()),
                "event": {
                    "type": "app_home_opened",
                    "user": self.user_id,
                    "channel": self.dm_id(),
                    "tab": "home",
                    "event_ts": f"{time.time():.6f}",
                },
            }
        )
        headers = signed_headers(body, signing_secret=self.signing_secret)
        headers["content-type"] = "application/json"
        response = httpx.post(
            self.app_url().rstrip("/") + EVENTS_PATH,
            content=body.encode(),
            headers=headers,
            timeout=10,
        )
        return Ack(status=response.status_code, text=response.text)


def _expectation(found: SampleReply) -> str:
    """What Salesbot should make of a sample, for the person who delivers it."""
    return found.handling[0].upper() + found.handling[1:] + "."


def _check_hint(found: SampleReply, contact: str) -> str:
    """Where a sample's handling shows in Slack: its card, or the contact's status."""
    if found.detected == ORDINARY and found.key != "unsubscribe":
        return "its card appears in Slack once Salesbot has read it (a badge marks where)"
    return f"/engagement {contact}"


# --------------------------------------------------------------------------------------------


def console_router(console: Console) -> APIRouter:
    """The console's routes under /sandbox (page, panes, actions, files, static assets)."""
    templates = Environment(
        loader=PackageLoader("sandbox.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    router = APIRouter(
        prefix="/sandbox", include_in_schema=False, dependencies=[Depends(_on_loopback)]
    )
    actions = APIRouter(dependencies=[Depends(_from_the_console)])

    def render(name: str, **context: Any) -> str:
        return templates.get_template(name).render(**context)

    def panes(channel: str, thread: str | None, open_thread: str | None) -> dict[str, Any]:
        channel = channel or console.start_channel or console.dm_id()
        home = console.home() if channel == HOME else None
        modal = console.modal()
        names = console.directory()
        return {
            "channels": render(
                "channels.html",
                conversations=console.conversations(),
                selected=channel,
                home=HOME,
            ),
            "title": console.title_of(channel),
            "messages": render(
                "messages.html",
                items=[] if channel == HOME else console.timeline(channel, names=names),
                home=home,
                home_body=blockkit.blocks_html(home.blocks, names) if home else None,
                is_home=channel == HOME,
                in_thread=False,
            ),
            "thread": render(
                "messages.html",
                items=console.timeline(channel, thread, names=names) if thread else [],
                in_thread=True,
                is_home=False,
                home=None,
            )
            if thread and channel != HOME
            else "",
            "mailbox": render(
                "mailbox.html",
                threads=console.threads(),
                open_thread=open_thread,
                mailbox=console.mailbox,
            ),
            "sent_choices": console.sent_choices(),
            "deliveries": render("deliveries.html", deliveries=console.deliveries),
            "counts": console.message_counts(),
            "clock": render(
                "clock.html",
                now=console.clock.now(),
                offset=_offset_text(console.clock.offset),
            ),
            "modal": {
                "id": modal.id,
                "hash": modal.hash,
                "html": str(blockkit.modal_html(modal.id, modal.definition, names)),
            }
            if modal is not None
            else None,
        }

    @router.get("", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        return HTMLResponse(
            render(
                "page.html",
                commands=COMMANDS,
                clock_steps=CLOCK_STEPS,
                dm=console.dm_id(),
                start=console.start_channel or console.dm_id(),
                mailbox=console.mailbox,
                samples=console.sample_choices(),
                suggestions=console.suggestions,
                user_name=console.directory().user_name(console.user_id),
            )
        )

    @router.get("/panes")
    def read_panes(
        channel: str = "", thread: str | None = None, mail: str | None = None
    ) -> JSONResponse:
        return JSONResponse(panes(channel, thread or None, mail or None))

    @actions.post("/command")
    def command(channel: str = Form(...), text: str = Form(...)) -> JSONResponse:
        line = text.strip()
        name, _, rest = line.partition(" ")
        if name not in COMMANDS:
            known = ", ".join(COMMANDS)
            return _refused(f"{name or 'that'} is not a command of Salesbot; try one of {known}")
        if channel == HOME:
            return _refused("slash commands are typed in a channel or a DM, not in the App Home")
        started = time.monotonic()
        ack = console.user().command(name, rest.strip(), channel_id=channel)
        if ack.ok:
            console.slack.answer_command(channel=channel, user=console.user_id, body=ack.text)
        return _answered(f"{name} {rest}".strip(), ack, started)

    @actions.post("/action")
    def action(
        container: str = Form(...),
        loc: str = Form(...),
        action_id: str = Form(""),
        block_id: str = Form(""),
        button_value: str = Form(""),
        channel: str = Form(""),
        ts: str = Form(""),
        view_id: str = Form(""),
        value: str | None = Form(None),
    ) -> JSONResponse:
        started = time.monotonic()
        user = console.user()
        shown = {"action_id": action_id, "block_id": block_id, "button_value": button_value}
        try:
            if container == "view":
                view = console.slack.view(view_id)
                element, found_block = blockkit.find_shown_element(
                    view.blocks, loc, value=value, **shown
                )
                ack = user.click(element, block_id=found_block, view=view, selected_value=value)
            elif container == "message":
                message = console.slack.message(channel, ts)
                element, found_block = blockkit.find_shown_element(
                    message.blocks, loc, value=value, **shown
                )
                ack = user.click(
                    element,
                    block_id=found_block,
                    channel_id=channel,
                    message_ts=ts,
                    selected_value=value,
                )
            else:
                return _refused("only a message's or a view's elements can be clicked")
        except (KeyError, LookupError, ValueError):
            # The message or view is gone, or another element sits where the click landed:
            # nothing is sent, and the page shows the card as it is now.
            return JSONResponse({"ok": False, "note": CHANGED, "changed": True}, status_code=409)
        label = _element_label(element, value)
        return _answered(label, ack, started)

    @actions.post("/submit")
    async def submit(request: Request) -> JSONResponse:
        form = await request.form()
        view_id = str(form.get("view_id") or "")
        fields = {key: [str(v) for v in form.getlist(key)] for key in form if key.startswith("b")}
        return await _in_thread(lambda: _submit(view_id, fields))

    def _submit(view_id: str, fields: dict[str, list[str]]) -> JSONResponse:
        try:
            view = console.slack.view(view_id)
        except KeyError:
            return _refused("that modal is gone")
        values, errors = blockkit.state_values(view.blocks, fields)
        if errors:
            return JSONResponse({"ok": False, "errors": errors, "note": "not sent: fix the fields"})
        started = time.monotonic()
        ack = console.user().submit(view, values)
        if not ack.ok:
            return _answered(f"submit {view.title or 'modal'}", ack, started)
        try:
            shown = console.slack.answer_view_submission(view.id, ack.json if ack.text else None)
        except ValueError as wrong:
            return _refused(f"the app's answer is not one Slack accepts: {wrong}")
        answered = _answered(f"submit {view.title or 'modal'}", ack, started)
        if shown:
            return JSONResponse({"ok": False, "errors": shown, "note": "the app found errors"})
        return answered

    @actions.post("/close")
    def close(view_id: str = Form(...), whole: str = Form("")) -> JSONResponse:
        try:
            view = console.slack.view(view_id)
        except KeyError:
            return _refused("that modal is gone")
        started = time.monotonic()
        ack = console.user().close(view)
        console.slack.close_view(view.id, whole_stack=whole == "1")
        if ack is None:
            return JSONResponse({"ok": True, "note": "closed"})
        return _answered("close", ack, started)

    @actions.post("/clock")
    def advance(hours: int = Form(...)) -> JSONResponse:
        if hours not in CLOCK_STEPS:
            return _refused("the clock moves by " + ", ".join(CLOCK_STEPS.values()))
        now = console.clock.advance(timedelta(hours=hours))
        if console.wake is not None:
            console.wake()
        return JSONResponse(
            {"ok": True, "note": f"clock moved {CLOCK_STEPS[hours]}: now {_when(now)}"}
        )

    @actions.post("/mail")
    def deliver(
        from_addr: str = Form(""),
        subject: str = Form(""),
        body: str = Form(""),
        in_reply_to: str = Form(""),
        sample: str = Form(""),
    ) -> JSONResponse:
        chosen: dict[str, str] | None = None
        if in_reply_to:
            chosen = next((c for c in console.sent_choices() if c["id"] == in_reply_to), None)
            if chosen is None:
                return _refused("the email to answer is not in the mailbox's sent mail")
        if sample:
            return _deliver_sample(sample, chosen)
        reply_to_id: str | None = None
        if chosen is not None:
            reply_to_id = chosen["message_id"] or None
            if not subject.strip():
                subject = chosen["subject"]
            if not subject.lower().startswith("re:"):
                subject = f"Re: {subject}"
        try:
            raw = compose(
                from_addr=from_addr,
                to_addr=console.mailbox,
                subject=subject,
                body=body,
                in_reply_to=reply_to_id,
                at=console.clock.now(),
            )
        except ValueError as bad:
            return _refused(str(bad))
        return _push(
            raw,
            what=f"“{subject or '(no subject)'}”",
            sender=parseaddr(from_addr)[1] or from_addr,
            expect="Salesbot reads it, classifies it and acts on what it says.",
            check="a card appears in Slack if it calls for a person (a badge marks where)",
        )

    def _deliver_sample(key: str, chosen: dict[str, str] | None) -> JSONResponse:
        try:
            found = next(s for s in console.samples if s.key == key)
        except StopIteration:
            known = ", ".join(s.key for s in console.samples)
            return _refused(f"no sample reply {key!r}; the form offers {known}")
        if chosen is None:
            return _refused(
                "a sample reply answers an email the mailbox sent: pick it under “In reply to”"
                " (approve a card first if the list is empty)"
            )
        contact = chosen["to"]
        try:
            raw = build(
                found.key,
                contact_email=contact,
                contact_name=chosen["to_name"] or contact.split("@")[0],
                rep_email=console.mailbox,
                subject=chosen["subject"],
                in_reply_to=chosen["message_id"],
                at=console.clock.now(),
                rep_name=chosen["from_name"] or None,
            )
        except ValueError as bad:
            return _refused(str(bad))
        sender = parseaddr(MAILER_DAEMON)[1] if found.detected == BOUNCE else contact
        return _push(
            raw,
            what=f"“{found.label}”",
            sender=sender,
            expect=_expectation(found),
            check=_check_hint(found, contact),
        )

    def _push(raw: bytes, *, what: str, sender: str, expect: str, check: str) -> JSONResponse:
        try:
            delivered = deliver_and_push(
                console.google,
                mailbox=console.mailbox,
                raw=raw,
                app_url=console.app_url(),
                audience=console.push_audience,
            )
        except httpx.HTTPError as lost:
            return _refused(
                f"the email is in the mailbox, but Gmail's push did not reach the app: {lost}"
            )
        delivery = Delivery(
            at=console.clock.now(),
            what=what,
            sender=sender,
            push_status=delivered.push_status,
            expect=expect,
            check=check,
        )
        console.log_delivery(delivery)
        if not delivery.accepted:
            return _refused(
                f"the email is in the mailbox; the app answered its push with "
                f"{delivered.push_status}"
            )
        return JSONResponse(
            {
                "ok": True,
                "note": f"delivered {what} from {sender} to {console.mailbox}; Gmail's push"
                f" answered {delivered.push_status}. {expect}",
            }
        )

    @actions.post("/home")
    def home() -> JSONResponse:
        started = time.monotonic()
        return _answered("opened the App Home", console.open_home(), started)

    @router.get("/files/{file_id}")
    def file(file_id: str) -> Response:
        found = next((f for f in console.slack.uploaded_files if f.id == file_id), None)
        if found is None or found.content is None:
            raise HTTPException(status_code=404, detail="no such file")
        media = mimetypes.guess_type(found.filename)[0] or "application/octet-stream"
        return Response(
            found.content,
            media_type=media,
            headers={"x-content-type-options": "nosniff", "content-security-policy": "sandbox"},
        )

    router.include_router(actions)
    return router


def _on_loopback(request: Request) -> None:
    """Answer only a request addressed to a loopback name, and from no other site's page.

    The custom header of the actions stops another site's page from posting to the console,
    but not a page of a rebound domain (evil.example resolved to 127.0.0.1): to the browser
    that page is same-origin. Its requests name evil.example in their Host header, though.
    """
    host = request.headers.get("host", "")
    if _host_name(host) not in LOOPBACK_HOSTS:
        raise HTTPException(
            status_code=421,
            detail=f"the sandbox console answers only at a loopback address (localhost,"
            f" 127.0.0.1 or [::1]), not at {host or 'a request without a Host'}",
        )
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{host}":
        raise HTTPException(
            status_code=403,
            detail=f"the sandbox console takes requests from its own page only, not from {origin}",
        )


def _host_name(host: str) -> str:
    """The name of a Host header without its port ("[::1]:8000" → "[::1]"), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def _from_the_console(request: Request) -> None:
    if request.headers.get(ACTION_HEADER) != "1":
        raise HTTPException(status_code=403, detail="actions come from the /sandbox page")


class QuietPolls(logging.Filter):
    """Keep the page's successful polls of its panes (~40 a minute) out of the access log;
    a poll that failed still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) < 5:
            return True
        path, status = str(args[2]), args[4]
        polled = path == PANES_PATH or path.startswith(PANES_PATH + "?")
        return not (polled and isinstance(status, int) and 200 <= status < 400)


def mount_console(app: Any, console: Console) -> None:
    """Serve the console on `app`: its routes and its static files under /sandbox/static.
    The access log leaves out the page's successful polls from then on."""
    app.include_router(console_router(console))
    app.mount("/sandbox/static", StaticFiles(directory=STATIC_DIR), name="sandbox-static")
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QuietPolls) for f in access.filters):
        access.addFilter(QuietPolls())


async def _in_thread(work: Callable[[], JSONResponse]) -> JSONResponse:
    # The submission posts to this same process: run it off the event loop.
    return await run_in_threadpool(work)


# --------------------------------------------------------------------------------------------


def _refused(message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "note": message}, status_code=400)


def _answered(what: str, ack: Ack, started: float) -> JSONResponse:
    took = (time.monotonic() - started) * 1000
    note = f"{what} — the app answered {ack.status} in {took:.0f} ms"
    if not ack.ok:
        note += f": {ack.text[:300]}"
    return JSONResponse({"ok": ack.ok, "note": note}, status_code=200 if ack.ok else 502)


def _element_label(element: Any, value: str | None) -> str:
    text = element.get("text") if isinstance(element, dict) else None
    label = str(text.get("text")) if isinstance(text, dict) else str(element.get("type"))
    if value is not None:
        for option in blockkit._options(element):
            if option.get("value") == value:
                option_text = option.get("text")
                if isinstance(option_text, dict):
                    return f"{label}: {option_text.get('text')}"
    return label


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def _clock_time(ts: str) -> str:
    return time.strftime("%H:%M:%S", time.localtime(int(ts.split(".")[0])))


def _when(at: datetime) -> str:
    return at.strftime("%a %d %b %Y %H:%M UTC")


def _offset_text(offset: timedelta) -> str:
    if not offset:
        return "on the wall clock"
    days, seconds = offset.days, offset.seconds
    hours = seconds // 3600
    parts = ([f"{days} day{'s' if days != 1 else ''}"] if days else []) + (
        [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []
    )
    return " ".join(parts or ["under an hour"]) + " ahead of the wall clock"


_URL: Final = re.compile(r"https?://[^\s<>\"]+")


def _linkify(text: str) -> Markup:
    """Plain text with its web addresses as links (an email's body, escaped)."""
    out: list[Markup] = []
    position = 0
    for found in _URL.finditer(text):
        url = found.group(0).rstrip(".,;:)]")
        out.append(escape(text[position : found.start()]))
        out.append(blockkit.link(url, url))
        position = found.start() + len(url)
    out.append(escape(text[position:]))
    return Markup("").join(out)


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    text = content if isinstance(content, str) else content.decode("utf-8", "replace")
    if part.get_content_type() == "text/html":
        text = re.sub(r"<[^>]+>", " ", text)
    return text


def _unsubscribe_links(value: str) -> list[str]:
    return [
        url
        for url in re.findall(r"<([^>]+)>", value)
        if url.lower().startswith(("http://", "https://", "mailto:"))
    ]


def _people(messages: Sequence[tuple[EmailMessage, bool]]) -> str:
    """Who a thread of the mailbox is with: the senders of what it received, and "to …" the
    recipients of what the rep sent that did not answer (not the rep's own address)."""

    def addresses(message: EmailMessage, header: str) -> list[str]:
        raw = str(message.get(header, ""))
        return [address for _, address in getaddresses([raw]) if address] or [raw]

    senders = [a for m, sent in messages if not sent for a in addresses(m, "From")]
    recipients = [a for m, sent in messages if sent for a in addresses(m, "To")]
    people = list(dict.fromkeys(senders))
    people += [f"to {a}" for a in dict.fromkeys(recipients) if a not in senders]
    return ", ".join(people)


def _mail_item(gmail_id: str, message: EmailMessage, *, sent: bool) -> dict[str, Any]:
    unsubscribe = str(message.get("List-Unsubscribe", ""))
    return {
        "id": gmail_id,
        "sent": sent,
        "from": str(message.get("From", "")),
        "to": ", ".join(
            f"{name} <{addr}>" if name else addr
            for name, addr in getaddresses([str(message.get("To", ""))])
        ),
        "subject": str(message.get("Subject", "")),
        "date": str(message.get("Date", "")),
        "message_id": str(message.get("Message-ID", "")),
        "in_reply_to": str(message.get("In-Reply-To", "")),
        "list_unsubscribe": unsubscribe,
        "unsubscribe_links": [
            blockkit.link(u, "unsubscribe" if not u.startswith("mailto:") else "mailto")
            for u in _unsubscribe_links(unsubscribe)
        ],
        "body": _linkify(_body_text(message)),
    }


__all__ = [
    "CLOCK_STEPS",
    "COMMANDS",
    "Console",
    "Delivery",
    "QuietPolls",
    "Suggestion",
    "console_router",
    "mount_console",
]
