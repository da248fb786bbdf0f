"""Slash commands: `/campaign launch [--dry-run] [--stale-top N]|list|status|pause|resume|help`,
`/job list|status|pause|resume|cancel`, `/rules list|add|remove`, `/triage [set #channel|clear]`,
`/digest subscribe|unsubscribe|list|now|help`, `/engagement <email or name>`, `/content
list|add|done` (handlers/slack/content.py)."""

from __future__ import annotations

import html
import logging
import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from domain.cadence import NoHolidays
from domain.campaigns import CampaignStatus
from domain.classification import Category
from domain.digests import USAGE as DIGEST_USAGE
from domain.digests import (
    DigestRequest,
    Frequency,
    Subscription,
    Verb,
    describe_local,
    parse_digest_command,
)
from domain.enrollments import EnrollmentSummary
from domain.errors import InvalidInput, InvalidTransition, NotFound, NotPermitted, SalesbotError
from domain.jobs import MAX_STALE_TOP, TERMINAL_JOB_STATES, EnrollmentStatus, Job, JobStatus
from domain.outreach import Actor
from domain.outreach.jobs import LaunchPreview
from domain.reply_policy import ReplyPolicy
from domain.reply_routing import describe, parse_channel
from domain.rules import DEFAULT_PRIORITY, MAX_PRIORITY, RuleType
from handlers.slack import content
from handlers.slack.blocks import (
    campaign_help_message,
    escape,
    job_line,
    rule_line,
    rules_message,
)
from handlers.slack.common import (
    Bound,
    NotConnected,
    SlackDeps,
    answer,
    resolve_actor,
    tells_user_on_error,
)
from handlers.slack.engagement import run_engagement
from handlers.slack.ids import Command
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

CAMPAIGN_USAGE = (
    "*Usage of /campaign*\n"
    "• `/campaign launch &lt;name or id&gt;` — start a job that drafts emails for review\n"
    "• `/campaign launch &lt;name or id&gt; --dry-run` — the audience, the cadence and when the "
    "first step would go out, launching nothing\n"
    "• `/campaign launch &lt;name or id&gt; --stale-top 50` — only the campaign's contacts at "
    "the 50 best stale clients of the daily ranking (with `--dry-run`: how many)\n"
    "• `/campaign list` — campaigns and their status\n"
    "• `/campaign status &lt;name or id&gt;` — jobs and progress of a campaign\n"
    "• `/campaign pause &lt;name or id&gt;` / `/campaign resume &lt;name or id&gt;`\n"
    "• `/campaign help` — this message"
)

JOB_USAGE = (
    "*Usage of /job*\n"
    "• `/job list` — your organization's recent jobs\n"
    "• `/job status &lt;id&gt;` — progress of one job, and where its contacts are in the cadence\n"
    "• `/job pause &lt;id&gt;` / `/job resume &lt;id&gt;` — hold a job's cadence, or carry it on\n"
    "• `/job cancel &lt;id&gt;` — stop a job; its cards not yet sent are withdrawn"
)

RULES_USAGE = (
    "*Usage of /rules*\n"
    "• `/rules list` — the rules that classify inbound email, in the order they are tried\n"
    "• `/rules add &lt;type&gt; &lt;pattern&gt; &lt;CATEGORY&gt; [priority]` — admins; lower "
    "priorities are tried first (default 100)\n"
    "• `/rules remove &lt;id&gt;` — admins\n"
    f"Types: {', '.join(f'`{t.value}`' for t in RuleType)} "
    "(a domain includes its subdomains; subject text ignores case; regexes use RE2 syntax, "
    "`(?i)` to ignore case).\n"
    f"Categories: {', '.join(c.value for c in Category)}.\n"
    "Examples: `/rules add sender_domain pinnacle.com AMC_ORDER 10` · "
    '`/rules add subject_contains "please remove me" REMOVE`'
)
TRIAGE_USAGE = (
    "*Usage of /triage*\n"
    "• `/triage` — the triage channel, and how reply cards are routed\n"
    "• `/triage set #channel` — make a channel the triage channel (admins)\n"
    "• `/triage clear` — no triage channel (admins)"
)
# Slack sends an address or a link typed in a command as `<mailto:a@b.com|a@b.com>`: the
# label is what was typed.
_SLACK_LINK = re.compile(r"<(?:mailto:|https?://)[^|>]*\|([^>]*)>")
_QUOTES = {'"': '"', "'": "'", "“": "”"}


def split_command(text: str) -> tuple[str, str]:
    """Split `launch Q4 lender win-back` into ('launch', 'Q4 lender win-back')."""
    text = (text or "").strip()
    if not text:
        return "", ""
    verb, _, rest = text.partition(" ")
    rest = rest.strip()
    if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in "\"'“”":
        try:
            rest = " ".join(shlex.split(rest))
        except ValueError:
            rest = rest.strip("\"'“”")
    return verb.lower(), rest.strip("“”")


def register(app: App, deps: SlackDeps) -> None:
    """Register the slash command listeners."""
    app.command(Command.CAMPAIGN.value)(ack=ack_fast, lazy=[Bound(run_campaign, deps)])
    app.command(Command.JOB.value)(ack=ack_fast, lazy=[Bound(run_job, deps)])
    app.command(Command.RULES.value)(ack=ack_fast, lazy=[Bound(run_rules, deps)])
    app.command(Command.TRIAGE.value)(ack=ack_fast, lazy=[Bound(run_triage, deps)])
    app.command(Command.ENGAGEMENT.value)(ack=ack_fast, lazy=[Bound(run_engagement, deps)])
    app.command(Command.DIGEST.value)(ack=ack_fast, lazy=[Bound(run_digest, deps)])
    content.register_command(app, deps)


def ack_fast(ack: Ack, command: dict[str, Any]) -> None:
    """Acknowledge at once; a launch says so, since its answer takes a while."""
    text, dry_run = split_dry_run(command.get("text", ""))
    verb, _ = split_command(text)
    if command["command"] == Command.CAMPAIGN and verb == "launch":
        if dry_run:
            ack(response_type="ephemeral", text="🔎 Previewing the launch… nothing is launched.")
        else:
            ack(
                response_type="ephemeral",
                text="🚀 Launching… I'll post the audience and job here.",
            )
    else:
        ack()


# `--dry-run` anywhere in the text; Slack clients may turn the two hyphens into a dash.
_DRY_RUN = re.compile(r"(?:^|\s)(?:--|—|–)dry-run(?=\s|$)", re.IGNORECASE)


def split_dry_run(text: str) -> tuple[str, bool]:
    """Take the `--dry-run` flag out of a command's text: (the rest, whether it was there)."""
    text = text or ""
    rest, found = _DRY_RUN.subn(" ", text)
    return (rest.strip(), True) if found else (text, False)


# `--stale-top N` (or `--stale-top=N`) anywhere in the text, the dash typed as Slack may turn it.
_STALE_TOP = re.compile(
    r"(?:^|\s)(?:--|—|–)stale-top(?:(?:=|\s+)(?!(?:--|—|–))(\S+))?(?=\s|$)", re.IGNORECASE
)
STALE_TOP_USAGE = (
    f"`--stale-top` takes a number of clients from 1 to {MAX_STALE_TOP}, e.g. "
    "`/campaign launch Win-back --stale-top 50`"
)


def split_stale_top(text: str) -> tuple[str, int | None, bool]:
    """Take `--stale-top N` out of a command's text: (the rest, N, whether the flag was
    there). Raises InvalidInput when N is missing, not a number or out of 1–1000."""
    text = text or ""
    found = list(_STALE_TOP.finditer(text))
    if not found:
        return text, None, False
    if len(found) > 1:
        raise InvalidInput(f"give `--stale-top` once. {STALE_TOP_USAGE}")
    raw = found[0].group(1) or ""
    before, after = text[: found[0].start()].rstrip(), text[found[0].end() :].lstrip()
    rest = f"{before} {after}".strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):
        given = f"`{escape(raw[:20])}`: " if raw else ""
        raise InvalidInput(f"{given}{STALE_TOP_USAGE}")
    number = int(raw)
    if not 1 <= number <= MAX_STALE_TOP:
        raise InvalidInput(f"{number:,} clients: {STALE_TOP_USAGE}")
    return rest, number, True


@tells_user_on_error
def run_campaign(
    deps: SlackDeps,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """Run a /campaign sub-command and answer it; a launch plans its job after answering
    (the rep hears why, should planning stop)."""
    rest, dry_run = split_dry_run(command.get("text", ""))
    rest, stale_top, stale_given = split_stale_top(rest)
    verb, arg = split_command(rest)
    if verb in ("", "help"):
        text, blocks = campaign_help_message(CAMPAIGN_USAGE, _reply_policy(deps, body, client))
        answer(respond, text, blocks=blocks)
        return
    if dry_run and verb != "launch":
        answer(respond, f"`--dry-run` goes with `/campaign launch`.\n\n{CAMPAIGN_USAGE}")
        return
    if stale_given and verb != "launch":
        answer(respond, f"`--stale-top` goes with `/campaign launch`.\n\n{CAMPAIGN_USAGE}")
        return
    if dry_run:
        answer(respond, _preview(deps, arg, body, client, stale_top=stale_top))
        return
    text, then = _campaign(deps, verb, arg, body, client, stale_top=stale_top)
    answer(respond, text)
    if then is not None:
        then()


@tells_user_on_error
def run_job(
    deps: SlackDeps,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """Run a /job sub-command and answer it."""
    verb, arg = split_command(command.get("text", ""))
    answer(respond, _job(deps, verb, arg, body, client))


@tells_user_on_error
def run_rules(
    deps: SlackDeps,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """Run a /rules sub-command and answer it (changes are for admins)."""
    verb, rest = [*(command.get("text") or "").split(None, 1), "", ""][:2]
    verb = verb.lower()
    if verb in ("", "help"):
        answer(respond, RULES_USAGE)
        return
    if verb not in ("list", "add", "remove"):
        answer(respond, f"I don't know `/rules {escape(verb[:40])}`.\n\n{RULES_USAGE}")
        return
    # A replayed `add` (the process died before answering) finds its rule stored and is
    # refused as a duplicate naming it: a rule is never stored twice.
    actor = resolve_actor(deps, body, client)
    if verb == "list":
        text, blocks = rules_message(deps.rules.list_rules(actor.org_id))
        answer(respond, text, blocks=blocks)
        return
    if verb == "remove":
        rule_id = rest.strip().lstrip("#")
        if not _is_number(rule_id) or len(rule_id) > 18:
            answer(
                respond,
                f"`/rules remove` needs a rule number, e.g. `/rules remove 12`.\n\n{RULES_USAGE}",
            )
            return
        removed = deps.rules.remove_rule(actor, actor.org_id, int(rule_id))
        answer(respond, f"Removed rule {rule_line(removed)}")
        return
    parsed = parse_rule_args(rest)
    if parsed is None:
        answer(respond, f"`/rules add` needs a type, a pattern and a category.\n\n{RULES_USAGE}")
        return
    rule_type, pattern, category, priority = parsed
    added = deps.rules.add_rule(
        actor,
        actor.org_id,
        rule_type=rule_type,
        pattern=pattern,
        category=category,
        priority=priority,
    )
    answer(respond, f"Added rule {rule_line(added)}")


@tells_user_on_error
def run_triage(
    deps: SlackDeps,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """Show, set or clear the organization's triage channel (changes are for admins)."""
    verb, rest = [*(command.get("text") or "").split(None, 1), "", ""][:2]
    verb, rest = verb.lower(), rest.strip()
    if verb == "help":
        answer(respond, TRIAGE_USAGE)
        return
    if verb not in ("", "show", "set", "clear") or (verb in ("", "show", "clear") and rest):
        shown = escape(" ".join((verb, rest)).strip()[:60])
        answer(respond, f"I don't know `/triage {shown}`.\n\n{TRIAGE_USAGE}")
        return
    if verb == "set" and parse_channel(rest) is None:
        problem = (
            f"`{escape(rest[:60])}` is not a channel I know: pick one from the list Slack "
            "offers as you type `#`."
            if rest
            else "`/triage set` needs a channel, e.g. `/triage set #replies`."
        )
        answer(respond, f"{problem}\n\n{TRIAGE_USAGE}")
        return
    if deps.triage is None:
        raise NotConnected("The triage channel is not available on this server.")
    actor = resolve_actor(deps, body, client)
    if verb == "set":
        view = deps.triage.set_channel(actor, actor.org_id, rest)
        head = f"✅ Reply cards nobody else takes now go to <#{view.channel_id}>."
    elif verb == "clear":
        view = deps.triage.clear(actor, actor.org_id)
        head = "✅ The triage channel is cleared."
    else:
        view = deps.triage.show(actor.org_id)
        head = ""
    lines = describe(view)
    answer(respond, "\n".join([head, *lines] if head else lines))


def parse_rule_args(text: str) -> tuple[str, str, str, int] | None:
    """Read `<type> <pattern> <CATEGORY> [priority]`; None when a part is missing.

    The pattern is everything between the type and the category, as typed (a regex keeps
    its backslashes); one pair of quotes around it is removed.
    """
    text = html.unescape(_SLACK_LINK.sub(r"\1", text)).strip()
    words = text.split()
    if len(words) < 3:
        return None
    priority = DEFAULT_PRIORITY
    last = words[-1]
    if len(words) >= 4 and _is_number(last):
        # A number too long to be a priority is kept out of bounds, for the domain to refuse.
        priority = int(last) if len(last) <= 6 else MAX_PRIORITY + 1
        text = text[: -len(last)].rstrip()
        words = words[:-1]
    rule_type, category = words[0], words[-1]
    pattern = text[len(rule_type) : len(text) - len(category)].strip()
    closing = _QUOTES.get(pattern[:1])
    if len(pattern) >= 2 and pattern[-1] == closing:
        pattern = pattern[1:-1]
    return rule_type, pattern, category, priority


def _is_number(word: str) -> bool:
    return word.isascii() and word.isdigit()


def _reply_policy(deps: SlackDeps, body: dict[str, Any], client: WebClient) -> ReplyPolicy | None:
    """The auto-reply policy of the user's organization, or None when the workspace is not
    connected to one (the help is still worth showing)."""
    try:
        actor = resolve_actor(deps, body, client)
    except (NotConnected, NotPermitted) as exc:
        log.info("help shown without the reply policy", extra={"reason": exc.message})
        return None
    return deps.reply_policies.get_policy(actor.org_id)


def _campaign(
    deps: SlackDeps,
    verb: str,
    arg: str,
    body: dict[str, Any],
    client: WebClient,
    *,
    stale_top: int | None = None,
) -> tuple[str, Callable[[], None] | None]:
    """Run a /campaign sub-command; return the answer and work to do after answering."""
    if verb not in ("launch", "list", "status", "pause", "resume"):
        return f"I don't know `/campaign {escape(verb)}`.\n\n{CAMPAIGN_USAGE}", None
    if verb != "list" and not arg:
        return f"`/campaign {verb}` needs a campaign name or id.\n\n{CAMPAIGN_USAGE}", None
    actor = resolve_actor(deps, body, client)
    if verb == "launch":
        # The command's work runs at least once; its trigger id makes a second run find
        # the job the first one created.
        trigger = body.get("trigger_id")
        result = deps.outreach.jobs.launch_campaign(
            actor.org_id,
            arg,
            owner_id=actor.user_id,
            request_key=f"slack:{trigger}"[:100] if trigger else None,
            stale_top=stale_top,
        )
        stale = (
            f" at the top {stale_top:,} stale client{'s' if stale_top != 1 else ''} of the "
            f"ranking computed {_slack_time(result.ranking_at)}"
            if stale_top is not None and result.ranking_at is not None
            else ""
        )
        text = (
            f"🚀 Launched *{escape(result.campaign_name)}*: {result.audience_count:,} contacts "
            f"in the audience{stale}. Job *#{result.job.id}* is drafting emails; cards will "
            "appear for review."
        )
        return text, lambda: _start_planning(deps, actor.org_id, result.job.id)
    return _campaign_query(deps, verb, arg, actor), None


def _campaign_query(deps: SlackDeps, verb: str, arg: str, actor: Actor) -> str:
    org_id = actor.org_id
    with UnitOfWork(deps.session_factory) as uow:
        if verb == "list":
            campaigns = uow.campaigns.list(org_id, status=None, limit=25, offset=0)
            if not campaigns:
                return "No campaigns yet. Create one with `POST /api/marketing/campaigns`."
            return "*Campaigns*\n" + "\n".join(
                f"• *{escape(c.name)}* (#{c.id}) — `{c.status.value}`, goal {c.goal.value}"
                for c in campaigns
            )
        campaign = uow.campaigns.find_by_name(org_id, arg)
        if campaign is None and arg.isdigit():
            try:
                campaign = uow.campaigns.get(org_id, int(arg))
            except NotFound:
                campaign = None
        if campaign is None:
            raise NotFound(f"no campaign named “{arg}”; `/campaign list` shows them")
        jobs = uow.jobs.list(org_id, campaign_id=campaign.id, limit=10)
    if verb == "status":
        lines = [f"*{escape(campaign.name)}* — `{campaign.status.value}`"]
        lines += [job_line(j) for j in jobs] or ["No jobs yet: `/campaign launch` starts one."]
        return "\n".join(lines)
    status = CampaignStatus.PAUSED if verb == "pause" else CampaignStatus.ACTIVE
    change = deps.outreach.jobs.set_campaign_status(actor, org_id, campaign.id, to=status)
    changed = len(change.job_ids)
    if verb == "resume":
        deps.wake_worker()
    past = "Paused" if verb == "pause" else "Resumed"
    return f"{past} *{escape(campaign.name)}* ({changed} job{'s' if changed != 1 else ''})."


def _job(deps: SlackDeps, verb: str, arg: str, body: dict[str, Any], client: WebClient) -> str:
    if verb in ("", "help"):
        return JOB_USAGE
    if verb not in ("list", "status", "cancel", "pause", "resume"):
        return f"I don't know `/job {escape(verb)}`.\n\n{JOB_USAGE}"
    actor = resolve_actor(deps, body, client)
    if verb == "list":
        with UnitOfWork(deps.session_factory) as uow:
            jobs = uow.jobs.list(actor.org_id, limit=15)
        return "*Jobs*\n" + "\n".join(_job_line(j) for j in jobs) if jobs else "No jobs yet."
    job_id = arg.lstrip("#")
    # A number a BIGINT cannot hold names no job.
    if not _is_number(job_id) or len(job_id) > 18:
        raise InvalidInput(f"`/job {verb}` needs a job number, e.g. `/job {verb} 12`")
    if verb == "cancel":
        job = deps.outreach.jobs.set_job_status(
            actor.org_id, int(job_id), JobStatus.CANCELLED, by=actor
        )
        return f"Cancelled {job_line(job)}"
    if verb in ("pause", "resume"):
        return _pause_or_resume(deps, actor, int(job_id), verb)
    detail = deps.outreach.jobs.job_detail(actor.org_id, int(job_id))
    if detail.is_inbox:
        return _job_line(detail)
    return "\n".join([_job_line(detail), *enrollment_lines(detail.enrollments)])


def _pause_or_resume(deps: SlackDeps, actor: Actor, job_id: int, verb: str) -> str:
    """Pause or resume a job (its owner or an admin); a resumed job's contacts are due again."""
    to = JobStatus.PAUSED if verb == "pause" else JobStatus.RUNNING
    try:
        job = deps.outreach.jobs.set_job_status(actor.org_id, job_id, to, by=actor)
    except InvalidTransition as exc:
        raise InvalidTransition(_refusal(deps, actor.org_id, job_id, verb) or exc.message) from exc
    if verb == "pause":
        return (
            f"⏸️ Paused {job_line(job)}\nIts contacts wait where they are; "
            f"`/job resume {job_id}` carries the cadence on."
        )
    deps.wake_worker()
    return (
        f"▶️ Resumed {job_line(job)}\nIts paused contacts are due again; each step goes out "
        "inside the send window of the contact's time zone."
    )


def _refusal(deps: SlackDeps, org_id: int, job_id: int, verb: str) -> str | None:
    """Say why a job cannot be paused or resumed in its present state (None: the domain's
    own refusal says it best, as for the replies inbox)."""
    with UnitOfWork(deps.session_factory) as uow:
        job = uow.jobs.get(org_id, job_id)
    if job.is_inbox:
        return None
    status = job.status
    if verb == "pause" and status == JobStatus.PAUSED:
        return f"Job #{job_id} is already paused; `/job resume {job_id}` carries it on."
    if verb == "resume" and status == JobStatus.RUNNING:
        return f"Job #{job_id} is already running."
    if status == JobStatus.PENDING:
        return f"Job #{job_id} is still being planned; {verb} it once it runs."
    if status in TERMINAL_JOB_STATES:
        past = "paused" if verb == "pause" else "resumed"
        return (
            f"Job #{job_id} has finished (`{status.value}`): a finished job cannot be {past}. "
            "`/campaign launch` starts a new one."
        )
    return None


def enrollment_lines(summary: EnrollmentSummary) -> list[str]:
    """Where a job's contacts are in its cadence, for `/job status`."""
    if summary.total == 0:
        return ["No contacts enrolled yet."]
    lines = [f"*Contacts:* {summary.total:,}"]
    active = summary.by_status.get(EnrollmentStatus.ACTIVE, 0)
    if active:
        parts = []
        if summary.running:
            parts.append(f"{summary.running:,} with a step under way (its card waits for review)")
        if summary.next_due_at is not None:
            parts.append(f"next step due {_slack_time(summary.next_due_at)}")
        lines.append(f"• {active:,} active" + (f" — {'; '.join(parts)}" if parts else ""))
        if summary.deferred_by_reason:
            lines.append(f"      waiting: {_counts(summary.deferred_by_reason)}")
    for status, reasons in (
        (EnrollmentStatus.PAUSED, summary.paused_by_reason),
        (EnrollmentStatus.STOPPED, summary.stopped_by_reason),
    ):
        count = summary.by_status.get(status, 0)
        if count:
            lines.append(f"• {count:,} {status.value} — {_counts(reasons)}")
    completed = summary.by_status.get(EnrollmentStatus.COMPLETED, 0)
    if completed:
        lines.append(f"• {completed:,} completed every step")
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{escape(reason)} {count:,}" for reason, count in counts.items())


def _slack_time(at: datetime) -> str:
    """A time each reader sees in their own zone (Slack's date formatting), UTC as fallback."""
    stamp = int(at.timestamp())
    fallback = at.astimezone(UTC).strftime("%a %Y-%m-%d %H:%M UTC")
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{fallback}>"


_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _days(weekdays: frozenset[int]) -> str:
    """Weekdays as people write them: Mon–Fri, or Mon, Wed, Fri."""
    days = sorted(weekdays)
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        return f"{_DAY_NAMES[days[0]]}–{_DAY_NAMES[days[-1]]}"
    return ", ".join(_DAY_NAMES[d] for d in days)


def _preview(
    deps: SlackDeps,
    arg: str,
    body: dict[str, Any],
    client: WebClient,
    *,
    stale_top: int | None = None,
) -> str:
    """Answer `/campaign launch <name> --dry-run`: what a launch would do, launching nothing."""
    if not arg:
        return f"`/campaign launch --dry-run` needs a campaign name or id.\n\n{CAMPAIGN_USAGE}"
    actor = resolve_actor(deps, body, client)
    preview = deps.outreach.jobs.preview_launch(
        actor.org_id,
        arg,
        holidays=deps.holidays or (lambda _settings: NoHolidays()),
        stale_top=stale_top,
    )
    return preview_text(preview)


def preview_text(preview: LaunchPreview) -> str:
    """The answer of a dry run: audience, cadence, and each first contact's first step."""
    count = preview.audience_count
    lines = [
        f"🔎 *Dry run of {escape(preview.campaign_name)}*: nothing was launched.",
        f"*Audience:* {count:,} contact{'s' if count != 1 else ''}.",
    ]
    if preview.stale_top is not None and preview.ranking_at is not None:
        top = preview.stale_top
        lines[-1] = (
            f"*Audience:* {count:,} contact{'s' if count != 1 else ''} — the campaign's "
            f"reachable contacts at the top {top:,} stale client{'s' if top != 1 else ''} "
            f"of the ranking computed {_slack_time(preview.ranking_at)}."
        )
    counting = "business days" if preview.business_days else "days"
    steps = " → ".join(
        f"step {s.number} · day {s.day} · {s.channel}"
        + (f" ({escape(s.title)})" if s.title else "")
        for s in preview.steps
    )
    lines.append(f"*Cadence* ({counting} after the previous step): {steps}")
    window = preview.window
    holidays = (
        f"{escape(preview.holiday_country)} public holidays skipped"
        if preview.holiday_country
        else "no holiday calendar"
    )
    if preview.contacts:
        lines.append(
            f"*First step* — the send window is {window.start:%H:%M}–{window.end:%H:%M} "
            f"{_days(window.weekdays)} in each contact's time zone, {holidays}:"
        )
        for contact in preview.contacts:
            local = contact.first_step_at.astimezone(contact.zone.zone)
            lines.append(
                f"• {escape(contact.name)} ({escape(contact.email)}) — "
                f"{local:%a %Y-%m-%d %H:%M} {local.tzname()} · {escape(contact.zone.describe())}"
            )
        more = count - len(preview.contacts)
        if more > 0:
            lines.append(f"… and {more:,} more.")
    lines += [f"⚠️ {escape(w)}" for w in preview.warnings]
    if not preview.warnings:
        flag = f" --stale-top {preview.stale_top}" if preview.stale_top is not None else ""
        lines.append(
            f"`/campaign launch {escape(preview.campaign_name)}{flag}` launches it; the first "
            "step's emails are drafted for review at once and go out once approved, inside the "
            "window."
        )
    return "\n".join(lines)


def _job_line(job: Job) -> str:
    """A job's line; the replies inbox is no campaign job and says what it is."""
    if not job.is_inbox:
        return job_line(job)
    line = (
        f"📥 *Replies inbox* (job #{job.id}) — the reply cards that answer no campaign; "
        "it runs for ever. `/triage` shows where they are posted."
    )
    if job.last_error:
        line += f"\n      ⚠️ {escape(job.last_error[:300])}"
    return line


def _start_planning(deps: SlackDeps, org_id: int, job_id: int) -> None:
    try:
        deps.outreach.jobs.plan_job(org_id, job_id)
    except SalesbotError as exc:
        log.warning("planning failed", extra={"job_id": job_id, "reason": exc.message})
        raise
    deps.wake_worker()


@tells_user_on_error
def run_digest(
    deps: SlackDeps,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    body: dict[str, Any],
) -> None:
    """Subscribe a channel to the engagement digest, unsubscribe it, list, or post one now."""
    try:
        request = parse_digest_command(command.get("text") or "")
    except InvalidInput as exc:
        answer(respond, f"⚠️ {exc.message}\n\n{DIGEST_USAGE}")
        return
    if request.verb == Verb.HELP:
        answer(respond, f"{request.problem}\n\n{DIGEST_USAGE}" if request.problem else DIGEST_USAGE)
        return
    if deps.digests is None:
        raise NotConnected("The engagement digest is not available on this server.")
    actor = resolve_actor(deps, body, client)
    here = command.get("channel_id")
    if request.verb == Verb.LIST:
        answer(respond, digest_list_text(deps.digests.list(actor.org_id)))
    elif request.verb == Verb.UNSUBSCRIBE:
        channel, removed = deps.digests.unsubscribe(actor, request, channel_id=here)
        answer(respond, unsubscribed_text(channel, removed))
    elif request.verb == Verb.SUBSCRIBE:
        zone = slack_time_zone(client, actor.slack_user_id)
        done = deps.digests.subscribe(actor, request, channel_id=here, user_time_zone=zone)
        answer(
            respond, subscribed_text(done.subscription, created=done.created, zone=done.zone_source)
        )
    else:
        zone = slack_time_zone(client, actor.slack_user_id)
        queued = deps.digests.post_now(actor, request, channel_id=here, user_time_zone=zone)
        what = "the last 7 days" if request.weekly else "today so far"
        answer(
            respond,
            f"🕐 Posting the engagement digest of {what}{_digest_scope(request)} in "
            f"<#{queued.channel_id}> ({queued.time_zone}, from {queued.zone_source}) now.",
        )


def slack_time_zone(client: WebClient, slack_user_id: str | None) -> str | None:
    """The time zone of a Slack user's profile (users.info `tz`), or None."""
    if not slack_user_id:
        return None
    try:
        info = client.users_info(user=slack_user_id)
    except SlackApiError as exc:
        log.info("no time zone from Slack", extra={"error": exc.response.get("error")})
        return None
    zone = (info.get("user") or {}).get("tz")
    return str(zone) if zone else None


def _digest_scope(request: DigestRequest) -> str:
    parts = []
    if request.campaign:
        parts.append(f"campaign “{escape(request.campaign[:80])}”")
    if request.rep_slack_id:
        parts.append(f"<@{request.rep_slack_id}>")
    return f" ({', '.join(parts)})" if parts else ""


def _subscription_scope(sub: Subscription) -> str:
    parts = []
    if sub.campaign_name:
        parts.append(f"campaign *{escape(sub.campaign_name)}*")
    if sub.rep_user_id is not None:
        rep = f"<@{sub.rep_slack_user_id}>" if sub.rep_slack_user_id else escape(sub.rep_name or "")
        parts.append(f"rep {rep}")
    return ", ".join(parts) or "every campaign and rep"


def subscribed_text(sub: Subscription, *, created: bool, zone: str) -> str:
    """The answer to `/digest subscribe`."""
    period = "the 7 days before" if sub.frequency == Frequency.WEEKLY else "the day before"
    head = "✅ Subscribed" if created else "✅ Updated the subscription:"
    return (
        f"{head} <#{sub.channel_id}> gets the engagement digest {sub.when} "
        f"{sub.time_zone} (the time zone of {zone}), reporting {period} — "
        f"{_subscription_scope(sub)}.\nNext post: {describe_local(sub.next_run_at, sub.time_zone)}."
    )


def unsubscribed_text(channel_id: str, removed: list[Subscription]) -> str:
    """The answer to `/digest unsubscribe`."""
    if not removed:
        return f"No engagement digest of <#{channel_id}> matches; `/digest list` shows them."
    lines = [f"✅ <#{channel_id}> no longer gets:"]
    lines += [f"• the digest {s.when} {s.time_zone} — {_subscription_scope(s)}" for s in removed]
    return "\n".join(lines)


def digest_list_text(subscriptions: list[Subscription]) -> str:
    """The answer to `/digest list`: each digest, its next post in its zone, its last error."""
    if not subscriptions:
        return (
            "No channel gets the engagement digest yet: "
            "`/digest subscribe daily 08:00 #channel` starts one."
        )
    lines = ["*Engagement digests*"]
    for sub in subscriptions:
        lines.append(
            f"• <#{sub.channel_id}> — {sub.when} {sub.time_zone} — {_subscription_scope(sub)} · "
            f"next {describe_local(sub.next_run_at, sub.time_zone)}"
        )
        if sub.last_error:
            # Salesbot's own sentence (domain/digests.py, jobs/digest.py): its mention links.
            lines.append(f"      ⚠️ last post failed: {sub.last_error[:300]}")
    return "\n".join(lines)
