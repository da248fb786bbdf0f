"""Newsletter use cases (docs/newsletters.md): newsletters and issues, the preview card,
approval, planning the sends, and following them until the issue is sent.

Each use case owns its unit of work. The work after an approval is durable: the approval
commits the issue `scheduled` and the sweep (`run_once`, a periodic job) plans it under a
lease, a batch of subscribers per transaction (their outbox rows, the cursor and the lease
together), so a process killed in the middle leaves a cursor the next planner carries on
from; the unique index on (newsletter_issue_id, contact_id) refuses a second row anyway.
The outbox then sends the rows with its own claims, caps and spacing, and checks each
recipient again when it claims the row (a contact who turned newsletters off since is not
sent to).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final

from domain import faults
from domain.deps import Deps
from domain.email_preferences import EmailType
from domain.errors import (
    Conflict,
    ExternalServiceError,
    InvalidInput,
    NotPermitted,
)
from domain.mail import text_to_html
from domain.mrkdwn import safe
from domain.newsletter_ports import NewsletterChat, NewsletterUnitOfWork
from domain.newsletters import (
    AWAITING_FINAL,
    CANCELLABLE,
    EDITABLE,
    SUBSCRIBER_VARIABLES,
    WITHDRAWN_REASON,
    IssueCard,
    IssueIn,
    IssueMetrics,
    IssueStatus,
    IssueTemplates,
    IssueUpdate,
    Newsletter,
    NewsletterIn,
    NewsletterIssue,
    NewsletterUpdate,
    SenderMailbox,
    SendingPlan,
    Subscriber,
    cancel_note,
    card_of,
    check_cancellable,
    check_issue,
    check_transition,
    describe_plan,
    final_cancel_note,
    plan_sending,
    render_issue,
    slot_rows,
    sources_of,
    subscriber_context,
)
from domain.outreach.common import Actor, StaleCard
from domain.ports import EmailTracker
from domain.sending import WAITING_FOR_MAILBOX, OutboxStatus
from domain.templates import TemplateProblem
from domain.tracking import TOKEN_LIFETIME, TrackingPlan

log = logging.getLogger(__name__)

#: Subscribers planned per transaction.
PLAN_BATCH: Final = 1_000
#: How long a planner holds an issue before another may carry its planning on.
PLAN_LEASE: Final = timedelta(minutes=5)
#: How long after a cancel the sweep leaves its card to the cancel's own update before it
#: shows the final figures (so the moment's figures cannot land after the final ones).
CANCEL_SETTLE: Final = timedelta(seconds=30)
TRACKING_OFF: Final = (
    "opens and clicks are not tracked: the organization's tracking is off"
    " (PUT /api/marketing/analytics-settings)"
)


class Newsletters:
    """Newsletters, issues, their preview cards and sending."""

    def __init__(
        self,
        deps: Deps[NewsletterUnitOfWork],
        *,
        chat: NewsletterChat | None = None,
        new_message_id: Callable[[], str] | None = None,
        tracker: EmailTracker | None = None,
        lease: timedelta = PLAN_LEASE,
        batch: int = PLAN_BATCH,
        on_work: Callable[[], None] | None = None,
    ) -> None:
        self._uow = deps.uow
        self._clock = deps.clock
        self._chat = chat
        self._new_message_id = new_message_id
        self._tracker = tracker
        self._lease = lease
        self._batch = batch
        #: Wakes the sweep (a card to post, an issue to plan).
        self.on_work = on_work
        #: Wakes the outbox worker once an issue's rows are planned.
        self.on_planned: Callable[[], None] | None = None

    # --- newsletters ---------------------------------------------------------------------

    def create(self, actor: Actor | None, org_id: int, data: NewsletterIn) -> Newsletter:
        """Create a newsletter; its senders must be users of the organization."""
        with self._uow() as uow:
            self._check_senders(uow, org_id, data.sender_user_ids)
            newsletter = uow.newsletters.add(
                org_id,
                now=self._clock.now(),
                name=data.name,
                description=data.description,
                sender_user_ids=list(dict.fromkeys(data.sender_user_ids)),
                cap_share_percent=data.cap_share_percent,
                slack_channel_id=data.slack_channel_id,
                created_by=actor.user_id if actor else None,
            )
            uow.commit()
        return newsletter

    def list_newsletters(self, org_id: int) -> list[Newsletter]:
        """The organization's newsletters, newest first."""
        with self._uow() as uow:
            return uow.newsletters.list(org_id)

    def get(self, org_id: int, newsletter_id: int) -> Newsletter:
        """One newsletter."""
        with self._uow() as uow:
            return uow.newsletters.get(org_id, newsletter_id)

    def update(
        self, actor: Actor | None, org_id: int, newsletter_id: int, data: NewsletterUpdate
    ) -> Newsletter:
        """Change a newsletter (an admin or its creator)."""
        changes = data.model_dump(exclude_unset=True)
        with self._uow() as uow:
            newsletter = uow.newsletters.get(org_id, newsletter_id)
            _owner(actor, newsletter, "change")
            if changes.get("sender_user_ids") is not None:
                self._check_senders(uow, org_id, changes["sender_user_ids"])
                changes["sender_user_ids"] = list(dict.fromkeys(changes["sender_user_ids"]))
            for key in ("name", "description", "sender_user_ids", "cap_share_percent"):
                if key in changes and changes[key] is None:
                    raise InvalidInput(f"{key} cannot be null", field=key)
            if changes:
                uow.newsletters.update(org_id, newsletter_id, now=self._clock.now(), **changes)
            uow.commit()
            return uow.newsletters.get(org_id, newsletter_id)

    def remove(self, actor: Actor | None, org_id: int, newsletter_id: int) -> None:
        """Delete a newsletter and its issues (an admin or its creator); refused while an
        issue is being sent."""
        with self._uow() as uow:
            newsletter = uow.newsletters.get(org_id, newsletter_id)
            _owner(actor, newsletter, "delete")
            busy = [
                i
                for i in uow.newsletter_issues.list(org_id, newsletter_id)
                if i.status in (IssueStatus.SCHEDULED, IssueStatus.SENDING)
            ]
            if busy:
                raise Conflict(
                    f"Issue {busy[0].id} of this newsletter is {busy[0].status.value}; delete"
                    " the newsletter once it is sent."
                )
            if not uow.newsletters.remove(org_id, newsletter_id):
                raise Conflict(
                    "An issue of this newsletter was scheduled at the same moment; delete the"
                    " newsletter once it is sent."
                )
            uow.commit()

    def _check_senders(self, uow: NewsletterUnitOfWork, org_id: int, user_ids: list[int]) -> None:
        for user_id in user_ids:
            if uow.users.find(org_id, user_id) is None:
                raise InvalidInput(
                    f"user {user_id} is not in this organization", field="sender_user_ids"
                )

    # --- issues --------------------------------------------------------------------------

    def create_issue(
        self, actor: Actor | None, org_id: int, newsletter_id: int, data: IssueIn
    ) -> NewsletterIssue:
        """Add a draft issue; its templates are checked in the sandbox first (a template
        that does not render is refused with its line)."""
        templates = IssueTemplates(
            subject=data.subject_template,
            html=data.html_template,
            text=data.text_template,
            variables=dict(data.variables),
        )
        check_issue(templates)
        with self._uow() as uow:
            uow.newsletters.get(org_id, newsletter_id)
            issue_id = uow.newsletter_issues.add(
                org_id,
                newsletter_id,
                now=self._clock.now(),
                title=data.title.strip(),
                subject_template=templates.subject,
                html_template=templates.html,
                text_template=templates.text,
                variables=templates.variables,
                created_by=actor.user_id if actor else None,
            )
            uow.commit()
            return uow.newsletter_issues.get(org_id, issue_id)

    def list_issues(self, org_id: int, newsletter_id: int) -> list[NewsletterIssue]:
        """A newsletter's issues, newest first."""
        with self._uow() as uow:
            uow.newsletters.get(org_id, newsletter_id)
            return uow.newsletter_issues.list(org_id, newsletter_id)

    def get_issue(
        self, org_id: int, newsletter_id: int, issue_id: int
    ) -> tuple[NewsletterIssue, IssueMetrics]:
        """An issue with its numbers (opened/clicked only where the organization tracks)."""
        with self._uow() as uow:
            issue = self._issue(uow, org_id, newsletter_id, issue_id)
            metrics = uow.newsletter_issues.metrics(org_id, issue_id)
            tracking = uow.analytics_settings.get(org_id).tracking
            if tracking.opens or tracking.clicks:
                opened, clicked = uow.newsletter_issues.tracked_counts(org_id, issue_id)
                metrics = metrics.model_copy(
                    update={
                        "opened": opened if tracking.opens else None,
                        "clicked": clicked if tracking.clicks else None,
                        "tracking_note": None
                        if tracking.opens and tracking.clicks
                        else "only what the organization tracks is counted",
                    }
                )
            else:
                metrics = metrics.model_copy(update={"tracking_note": TRACKING_OFF})
        return issue, metrics

    def update_issue(
        self,
        actor: Actor | None,
        org_id: int,
        newsletter_id: int,
        issue_id: int,
        data: IssueUpdate,
        *,
        fingerprint: str | None = None,
    ) -> NewsletterIssue:
        """Change an issue not yet scheduled; its templates are checked again. An issue in
        review gets a new preview (the card's message is updated; an approval of the old
        one is refused)."""
        changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
        now = self._clock.now()
        with self._uow() as uow:
            issue = self._issue(uow, org_id, newsletter_id, issue_id)
            newsletter = uow.newsletters.get(org_id, issue.newsletter_id)
            _editor(actor, newsletter, issue)
            if issue.status not in EDITABLE:
                raise InvalidInput(
                    f"Issue {issue_id} is {issue.status.value}; it can no longer be changed."
                )
            if fingerprint is not None and fingerprint != issue.card_fingerprint:
                raise StaleCard("This issue changed since the form was opened; open it again.")
            templates = IssueTemplates(
                subject=changes.get("subject_template", issue.subject_template),
                html=changes.get("html_template", issue.html_template),
                text=changes.get("text_template", issue.text_template),
                variables=dict(changes.get("variables", issue.variables)),
            )
            check_issue(templates)
            if "title" in changes:
                changes["title"] = str(changes["title"]).strip()
            values: dict[str, Any] = dict(changes)
            expected = frozenset({issue.status})
            if issue.status == IssueStatus.IN_REVIEW:
                card = self._preview(
                    uow,
                    newsletter,
                    replace(issue, title=values.get("title", issue.title)),
                    templates,
                )
                edited_by = _slack_of(uow, org_id, actor.user_id if actor else None)
                card = replace(card, note=f"✏️ Edited by {_mention(edited_by)}")
                values.update(
                    card=card.as_json(),
                    card_fingerprint=card.fingerprint,
                    audience_count=card.audience_count,
                )
            if not uow.newsletter_issues.update(
                org_id, issue_id, now=now, expected=expected, **values
            ):
                raise Conflict("Someone changed this issue at the same moment; try again.")
            uow.commit()
            updated = uow.newsletter_issues.get(org_id, issue_id)
        self._show(updated)
        return updated

    def remove_issue(
        self, actor: Actor | None, org_id: int, newsletter_id: int, issue_id: int
    ) -> None:
        """Delete an issue that is not scheduled or being sent (one in review is cancelled
        first: its card says so)."""
        with self._uow() as uow:
            issue = self._issue(uow, org_id, newsletter_id, issue_id)
            newsletter = uow.newsletters.get(org_id, issue.newsletter_id)
            _editor(actor, newsletter, issue)
            if issue.status in (IssueStatus.SCHEDULED, IssueStatus.SENDING):
                raise Conflict(
                    f"Issue {issue_id} is {issue.status.value}; it cannot be deleted while its"
                    " emails are on their way."
                )
            if not uow.newsletter_issues.remove(org_id, issue_id):
                raise Conflict(
                    f"Issue {issue_id} was scheduled at the same moment; it cannot be deleted"
                    " while its emails are on their way."
                )
            uow.commit()
        if issue.status == IssueStatus.IN_REVIEW and issue.slack_message_ts:
            self._show(replace(issue, status=IssueStatus.CANCELLED), note="🗑️ Deleted")

    def _issue(
        self, uow: NewsletterUnitOfWork, org_id: int, newsletter_id: int | None, issue_id: int
    ) -> NewsletterIssue:
        issue = uow.newsletter_issues.get(org_id, issue_id)
        if newsletter_id is not None and issue.newsletter_id != newsletter_id:
            uow.newsletters.get(org_id, newsletter_id)
            raise InvalidInput(f"issue {issue_id} is not an issue of newsletter {newsletter_id}")
        return issue

    # --- review --------------------------------------------------------------------------

    def submit(
        self, actor: Actor | None, org_id: int, newsletter_id: int, issue_id: int
    ) -> NewsletterIssue:
        """Put an issue up for review: its preview card (rendered for a sample subscriber,
        with the audience and the sending plan) is posted to the newsletter's channel.

        Refused, with nothing changed, when a template does not render, when no sender has
        a connected mailbox, or when the subscribers are more than the mailboxes can send
        in 30 days."""
        now = self._clock.now()
        with self._uow() as uow:
            issue = self._issue(uow, org_id, newsletter_id, issue_id)
            newsletter = uow.newsletters.get(org_id, issue.newsletter_id)
            _editor(actor, newsletter, issue)
            check_transition(issue.id, issue.status, IssueStatus.IN_REVIEW)
            if not newsletter.slack_channel_id:
                raise InvalidInput(
                    f"Newsletter {newsletter.name!r} has no Slack channel for its preview"
                    " cards: set its slack_channel_id, then submit again.",
                    field="slack_channel_id",
                )
            card = self._preview(uow, newsletter, issue, issue.templates)
            if not uow.newsletter_issues.update(
                org_id,
                issue_id,
                now=now,
                expected=frozenset({issue.status}),
                status=IssueStatus.IN_REVIEW,
                card=card.as_json(),
                card_fingerprint=card.fingerprint,
                audience_count=card.audience_count,
                slack_channel_id=newsletter.slack_channel_id,
                slack_message_ts=None,
                submitted_by=actor.user_id if actor else None,
                error=None,
                rejected_reason=None,
            ):
                raise Conflict("Someone changed this issue at the same moment; try again.")
            uow.commit()
            submitted = uow.newsletter_issues.get(org_id, issue_id)
        log.info("newsletter issue submitted", extra={"org_id": org_id, "issue_id": issue_id})
        self._wake()
        return submitted

    def _preview(
        self,
        uow: NewsletterUnitOfWork,
        newsletter: Newsletter,
        issue: NewsletterIssue,
        templates: IssueTemplates,
    ) -> IssueCard:
        """The card of an issue: the sample, the audience and the plan (or a refusal)."""
        check_issue(templates)
        org_id = newsletter.org_id
        audience = uow.newsletter_subscribers.count(org_id)
        sample = next(iter(uow.newsletter_subscribers.page(org_id, after=0, limit=1)), None)
        firm = self._firm(uow, org_id)
        if sample is not None:
            context = subscriber_context(
                sample,
                firm_name=firm,
                newsletter_name=newsletter.name,
                issue_title=issue.title,
                variables=templates.variables,
            )
        else:
            context = {**SUBSCRIBER_VARIABLES, **templates.variables}
        try:
            rendered = render_issue(templates, context)
        except TemplateProblem as exc:
            who = sample.email if sample else "the sample subscriber"
            raise TemplateProblem(
                exc.field or "template", f"{exc.reason} (for {who})", line=exc.line
            ) from exc
        plan = plan_sending(
            self._mailboxes(uow, newsletter),
            share_percent=newsletter.cap_share_percent,
            subscribers=audience,
            start=self._clock.now(),
            newsletter_name=repr(newsletter.name),
        )
        return IssueCard(
            issue_id=issue.id,
            newsletter_name=newsletter.name,
            title=issue.title,
            status=IssueStatus.IN_REVIEW,
            fingerprint=templates.fingerprint(),
            audience_count=audience,
            sample_email=sample.email if sample else None,
            sample_subject=rendered.subject,
            sample_text=rendered.text,
            plan_line=describe_plan(plan),
        )

    def _mailboxes(self, uow: NewsletterUnitOfWork, newsletter: Newsletter) -> list[SenderMailbox]:
        """The senders' connected mailboxes, each free after the newsletter emails queued
        on it before (another issue's share is not taken twice)."""
        found: list[SenderMailbox] = []
        seen: set[int] = set()
        for user_id in newsletter.sender_user_ids:
            account = uow.gmail_accounts.for_user(newsletter.org_id, user_id, connected_only=True)
            if account is None or account.id in seen:
                continue
            seen.add(account.id)
            busy = uow.newsletter_issues.newsletter_busy_until(account.id)
            found.append(
                SenderMailbox(
                    account_id=account.id,
                    user_id=user_id,
                    email=account.email,
                    daily_cap=account.daily_send_cap,
                    min_interval_seconds=account.min_send_interval_seconds,
                    busy_until=busy,
                )
            )
        return found

    def _firm(self, uow: NewsletterUnitOfWork, org_id: int) -> str:
        org = uow.orgs.find(org_id)
        return org.name if org else ""

    def approve(self, actor: Actor, issue_id: int, *, fingerprint: str | None) -> NewsletterIssue:
        """Approve an issue as its card showed it and schedule it: the sweep plans its
        sends (an admin or the newsletter's creator; a compare-and-set, so two clicks
        schedule it once)."""
        now = self._clock.now()
        org_id = actor.org_id
        with self._uow() as uow:
            issue = uow.newsletter_issues.get(org_id, issue_id)
            newsletter = uow.newsletters.get(org_id, issue.newsletter_id)
            _approver(uow, actor, newsletter)
            if issue.status != IssueStatus.IN_REVIEW:
                raise InvalidInput(
                    f"This issue is already {issue.status.value.replace('_', ' ')}; nothing"
                    " was done."
                )
            # A click that names no fingerprint (a forged value) binds to nothing shown.
            if fingerprint is None or fingerprint != issue.card_fingerprint:
                raise StaleCard(
                    "This issue changed since this card was shown; it has been refreshed."
                    " Review it again."
                )
            audience = uow.newsletter_subscribers.count(org_id)
            plan = plan_sending(
                self._mailboxes(uow, newsletter),
                share_percent=newsletter.cap_share_percent,
                subscribers=audience,
                start=now,
                newsletter_name=repr(newsletter.name),
            )
            approver = actor.slack_user_id or _slack_of(uow, org_id, actor.user_id)
            stored = dict(issue.card or {})
            stored.update(
                audience_count=audience,
                plan_line=describe_plan(plan),
                note=f"✅ Approved by {_mention(approver)}; scheduling {audience:,} emails…",
            )
            if not uow.newsletter_issues.update(
                org_id,
                issue_id,
                now=now,
                expected=frozenset({IssueStatus.IN_REVIEW}),
                fingerprint=issue.card_fingerprint,
                status=IssueStatus.SCHEDULED,
                approved_by=actor.user_id,
                approved_at=now,
                audience_count=audience,
                card=stored,
                plan=None,
                plan_cursor=0,
                planned_count=0,
            ):
                raise Conflict(
                    "Someone else acted on this issue at the same moment; nothing was done twice."
                )
            uow.commit()
            approved = uow.newsletter_issues.get(org_id, issue_id)
        log.info("newsletter issue approved", extra={"org_id": org_id, "issue_id": issue_id})
        self._show(approved)
        self._wake()
        return approved

    def reject(self, actor: Actor, issue_id: int, *, reason: str | None = None) -> NewsletterIssue:
        """Reject an issue in review (an admin or the newsletter's creator); it can be
        edited and submitted again."""
        now = self._clock.now()
        org_id = actor.org_id
        reason = (reason or "").strip()[:500] or None
        with self._uow() as uow:
            issue = uow.newsletter_issues.get(org_id, issue_id)
            newsletter = uow.newsletters.get(org_id, issue.newsletter_id)
            _approver(uow, actor, newsletter)
            check_transition(issue.id, issue.status, IssueStatus.REJECTED)
            stored = dict(issue.card or {})
            who = _mention(actor.slack_user_id or _slack_of(uow, org_id, actor.user_id))
            stored["note"] = f"🚫 Rejected by {who}" + (f": {reason}" if reason else "")
            if not uow.newsletter_issues.update(
                org_id,
                issue_id,
                now=now,
                expected=frozenset({IssueStatus.IN_REVIEW}),
                status=IssueStatus.REJECTED,
                rejected_reason=reason,
                card=stored,
            ):
                raise Conflict("Someone else acted on this issue at the same moment.")
            uow.commit()
            rejected = uow.newsletter_issues.get(org_id, issue_id)
        self._show(rejected)
        return rejected

    def cancel(
        self,
        actor: Actor | None,
        org_id: int,
        issue_id: int,
        *,
        newsletter_id: int | None = None,
    ) -> NewsletterIssue:
        """Cancel sending a scheduled or sending issue (an admin or the newsletter's
        creator): its planning stops and its emails still queued are withdrawn, in one
        transaction; those sent, or on their way under the outbox's claim, are left alone.
        Cancelling a cancelled issue changes nothing (a second click, a retry).

        The issue's compare-and-set comes first: on PostgreSQL it waits for a planner's
        batch being committed (and the planner's next batch then fails its own
        compare-and-set and is rolled back), so the withdrawal that follows sees every row
        planned. A row the outbox claims at the same moment is either claimed or withdrawn,
        never both (both are compare-and-sets on its `queued` status)."""
        now = self._clock.now()
        with self._uow() as uow:
            issue = self._issue(uow, org_id, newsletter_id, issue_id)
            newsletter = uow.newsletters.get(org_id, issue.newsletter_id)
            if actor is not None:
                _approver(uow, actor, newsletter, verb="cancel")
            check_cancellable(issue.id, issue.status)
            if issue.status == IssueStatus.CANCELLED:
                return issue
            if not uow.newsletter_issues.update(
                org_id,
                issue_id,
                now=now,
                expected=CANCELLABLE,
                status=IssueStatus.CANCELLED,
                # The planner's lease is taken from it: its next batch stops, and no lease
                # is left to wait out.
                plan_lease_until=None,
                cancelled_by=actor.user_id if actor else None,
                cancelled_at=now,
            ):
                # Nothing was changed; what moved it meanwhile decides the answer.
                current = uow.newsletter_issues.get(org_id, issue_id)
                check_cancellable(current.id, current.status)
                if current.status == IssueStatus.CANCELLED:
                    return current
                raise Conflict("Someone else acted on this issue at the same moment; try again.")
            withdrawn = uow.newsletter_issues.withdraw_queued(org_id, issue_id)
            counts = uow.newsletter_issues.send_counts(issue_id)
            sent = counts.get(OutboxStatus.SENT.value, 0)
            flying = counts.get(OutboxStatus.SENDING.value, 0)
            who = actor.slack_user_id if actor else None
            if actor is not None and who is None:
                who = _slack_of(uow, org_id, actor.user_id)
            by = _mention(who) if actor is not None else "an API token"
            stored = dict(issue.card or {})
            stored["note"] = cancel_note(
                by=by,
                at=now,
                sent=sent,
                on_their_way=flying,
                withdrawn=withdrawn,
                planned=sum(counts.values()),
            )
            if flying:
                # The sweep follows the emails on their way and, once they have ended,
                # shows the final figures (follow_cancelled).
                stored[AWAITING_FINAL] = {"by": by}
            uow.newsletter_issues.update(
                org_id,
                issue_id,
                now=now,
                card=stored,
                sent_before_cancel=sent,
                withdrawn_count=withdrawn,
            )
            uow.commit()
            cancelled = uow.newsletter_issues.get(org_id, issue_id)
        log.info(
            "newsletter issue cancelled",
            extra={"org_id": org_id, "issue_id": issue_id, "sent": sent, "withdrawn": withdrawn},
        )
        self._show(cancelled)
        return cancelled

    def edit(
        self,
        actor: Actor,
        issue_id: int,
        *,
        subject: str,
        text: str,
        html: str,
        fingerprint: str | None,
    ) -> NewsletterIssue:
        """Change an issue's templates from its card's Edit form (checked again; the card
        shows the new preview and needs a new approval)."""
        if fingerprint is None:
            raise StaleCard("This form does not say which preview it edits; open it again.")
        with self._uow() as uow:
            issue = uow.newsletter_issues.get(actor.org_id, issue_id)
        return self.update_issue(
            actor,
            actor.org_id,
            issue.newsletter_id,
            issue_id,
            IssueUpdate(subject_template=subject, text_template=text, html_template=html),
            fingerprint=fingerprint,
        )

    def refresh_card(self, org_id: int, issue_id: int) -> None:
        """Show an issue's card as the issue is now (after a refused stale approval)."""
        with self._uow() as uow:
            issue = uow.newsletter_issues.get(org_id, issue_id)
        self._show(issue)

    def issue_for(self, actor: Actor, issue_id: int) -> NewsletterIssue:
        """An issue of the actor's organization (the Edit form)."""
        with self._uow() as uow:
            return uow.newsletter_issues.get(actor.org_id, issue_id)

    # --- the sweep -----------------------------------------------------------------------

    def run_once(self) -> int:
        """One round of the sweep: post new cards, plan scheduled issues, move issues to
        `sending` and `sent`; return how much it did."""
        done = self.post_cards()
        while self.plan_next():
            done += 1
        done += self.follow_sends()
        done += self.follow_cancelled()
        return done

    def post_cards(self, *, limit: int = 20) -> int:
        """Post the cards of issues in review that have no message yet."""
        if self._chat is None:
            return 0
        with self._uow() as uow:
            waiting = uow.newsletter_issues.unposted(limit=limit)
        posted = 0
        for org_id, issue_id in waiting:
            with self._uow() as uow:
                issue = uow.newsletter_issues.get(org_id, issue_id)
            card = card_of(issue)
            if card is None or issue.slack_message_ts or not issue.slack_channel_id:
                continue
            try:
                channel, ts = self._chat.post_card(org_id, issue.slack_channel_id, card)
            except ExternalServiceError as exc:
                log.warning(
                    "newsletter card not posted",
                    extra={"issue_id": issue_id, "reason": exc.message},
                )
                if exc.retryable:
                    continue  # posted at a later round
                # Slack refused for good (no such channel, not in it): the issue says why and
                # waits for a resubmission; "-" keeps the sweep from posting it again.
                with self._uow() as uow:
                    uow.newsletter_issues.update(
                        org_id,
                        issue_id,
                        now=self._clock.now(),
                        error=f"The preview card could not be posted: {exc.message}",
                        slack_message_ts="-",
                    )
                    uow.commit()
                continue
            with self._uow() as uow:
                uow.newsletter_issues.update(
                    org_id,
                    issue_id,
                    now=self._clock.now(),
                    slack_channel_id=channel,
                    slack_message_ts=ts,
                )
                uow.commit()
            posted += 1
        return posted

    def plan_next(self) -> bool:
        """Plan one scheduled issue (or carry on a planning whose planner died); False
        when there is none."""
        now = self._clock.now()
        lease = now + self._lease
        with self._uow() as uow:
            claimed = uow.newsletter_issues.claim_planning(now=now, lease_until=lease)
            uow.commit()
        if claimed is None:
            return False
        org_id, issue_id = claimed
        faults.reach("newsletter.claimed")
        try:
            self._plan(org_id, issue_id, lease)
        except InvalidInput as exc:
            self._cancel(org_id, issue_id, lease, exc.message)
        return True

    def _plan(self, org_id: int, issue_id: int, lease: datetime) -> None:
        if self._new_message_id is None:
            raise InvalidInput("Gmail is not set up in this Salesbot: nothing can be sent.")
        with self._uow() as uow:
            issue = uow.newsletter_issues.get(org_id, issue_id)
            newsletter = uow.newsletters.get(org_id, issue.newsletter_id)
            firm = self._firm(uow, org_id)
            tracking = uow.analytics_settings.get(org_id).tracking
            if issue.plan is None:
                audience = uow.newsletter_subscribers.count(org_id)
                plan = plan_sending(
                    self._mailboxes(uow, newsletter),
                    share_percent=newsletter.cap_share_percent,
                    subscribers=audience,
                    start=self._clock.now(),
                    newsletter_name=repr(newsletter.name),
                )
                if not uow.newsletter_issues.update(
                    org_id,
                    issue_id,
                    now=self._clock.now(),
                    expected=frozenset({IssueStatus.SCHEDULED}),
                    plan=plan.as_json(),
                    planned_start=plan.start,
                ):
                    return
                uow.commit()
            else:
                plan = SendingPlan.from_json(issue.plan)
        track = None
        if self._tracker is not None and (tracking.opens or tracking.clicks):
            track = TrackingPlan(opens=tracking.opens, clicks=tracking.clicks)
        templates = issue.templates
        cursor, count = issue.plan_cursor, issue.planned_count
        last_at: datetime | None = issue.planned_finish
        skipped: list[str] = []
        while True:
            with self._uow() as uow:
                page = uow.newsletter_subscribers.page(org_id, after=cursor, limit=self._batch)
                now = self._clock.now()
                if not page:
                    self._finish_planning(
                        uow, org_id, issue_id, lease, plan, count, last_at, skipped
                    )
                    uow.commit()
                    break
                rendered = [
                    self._row(subscriber, issue, newsletter, firm, templates, skipped)
                    for subscriber in page
                ]
                # A skipped subscriber takes no slot: `count` stays the slots given.
                rows: list[dict[str, Any]] = []
                for row, pace, at in slot_rows(plan, given=count, rendered=rendered):
                    row.update(
                        not_before=at,
                        gmail_account_id=pace.account_id,
                        sender_user_id=pace.user_id,
                        from_email=pace.email,
                    )
                    rows.append(row)
                    last_at = at
                stored = uow.outbox.add_many(org_id, rows)
                if track is not None and rows:
                    self._track(uow, org_id, issue_id, page, track, now)
                next_lease = now + self._lease
                if not uow.newsletter_issues.update(
                    org_id,
                    issue_id,
                    now=now,
                    expected=frozenset({IssueStatus.SCHEDULED}),
                    holding=lease,
                    plan_cursor=page[-1].contact_id,
                    planned_count=count + len(rows),
                    planned_finish=last_at,
                    plan_lease_until=next_lease,
                ):
                    log.warning("newsletter planning lost its lease", extra={"issue_id": issue_id})
                    return
                uow.commit()
            cursor, count, lease = page[-1].contact_id, count + len(rows), next_lease
            log.info(
                "newsletter batch planned",
                extra={"issue_id": issue_id, "stored": stored, "planned": count},
            )
            # From here a crash leaves a committed batch and its cursor: the next planner,
            # once the lease is over, goes on after it.
            faults.reach("newsletter.chunk")
        self._wake_outbox()
        with self._uow() as uow:
            planned = uow.newsletter_issues.get(org_id, issue_id)
        self._show(planned)

    def _row(
        self,
        subscriber: Subscriber,
        issue: NewsletterIssue,
        newsletter: Newsletter,
        firm: str,
        templates: IssueTemplates,
        skipped: list[str],
    ) -> dict[str, Any] | None:
        assert self._new_message_id is not None
        context = subscriber_context(
            subscriber,
            firm_name=firm,
            newsletter_name=newsletter.name,
            issue_title=issue.title,
            variables=templates.variables,
        )
        try:
            rendered = render_issue(templates, context)
        except TemplateProblem as exc:
            skipped.append(f"{subscriber.email}: {exc.message}")
            return None
        return {
            "message_id": self._new_message_id(),
            "newsletter_issue_id": issue.id,
            "contact_id": subscriber.contact_id,
            "to_email": subscriber.email,
            # One line: a name with a line break would fail the To header at sending.
            "to_name": " ".join(subscriber.full_name.split()) or None,
            "subject": rendered.subject,
            "body_text": rendered.text,
            "body_html": rendered.html,
            "campaign_email": True,
            "email_type": EmailType.NEWSLETTER.value,
            "tracked": False,
        }

    def _track(
        self,
        uow: NewsletterUnitOfWork,
        org_id: int,
        issue_id: int,
        page: list[Subscriber],
        track: TrackingPlan,
        now: datetime,
    ) -> None:
        """Give the batch's rows their pixel and redirecting links (their ids name them)."""
        assert self._tracker is not None
        sends = uow.newsletter_issues.sends_of(issue_id, [s.contact_id for s in page])
        tracked: list[tuple[int, str]] = []
        for send_id, body_text, body_html in sends:
            source = body_html if body_html is not None else text_to_html(body_text)
            tracked.append(
                (
                    send_id,
                    self._tracker.track(
                        source,
                        org_id=org_id,
                        send_id=send_id,
                        plan=track,
                        expires_at=now + TOKEN_LIFETIME,
                    ),
                )
            )
        uow.newsletter_issues.set_tracked_html(tracked)

    def _finish_planning(
        self,
        uow: NewsletterUnitOfWork,
        org_id: int,
        issue_id: int,
        lease: datetime,
        plan: SendingPlan,
        count: int,
        last_at: datetime | None,
        skipped: list[str],
    ) -> None:
        issue = uow.newsletter_issues.get(org_id, issue_id)
        now = self._clock.now()
        stored = dict(issue.card or {})
        final = replace(plan, total=count)
        line = describe_plan(final)
        stored["plan_line"] = line
        if count:
            stored["note"] = f"📅 Scheduled: {line}"
        else:
            stored["note"] = "📭 Nobody to send to: no subscriber receives newsletters."
        error = None
        if skipped:
            error = f"{len(skipped)} subscribers skipped (the template failed): {skipped[0]}"
            # A subscriber's address and a template's message are outside text: escaped.
            stored["note"] += f" ⚠️ {safe(error, 1_000)}"
        uow.newsletter_issues.update(
            org_id,
            issue_id,
            now=now,
            expected=frozenset({IssueStatus.SCHEDULED}),
            holding=lease,
            planned_at=now,
            plan_lease_until=None,
            planned_count=count,
            planned_finish=final.finish if count else now,
            card=stored,
            error=error,
        )

    def _cancel(self, org_id: int, issue_id: int, lease: datetime, reason: str) -> None:
        """A scheduled issue that cannot be planned any more (its mailboxes were
        disconnected since): it is cancelled, with the reason on its card."""
        log.warning("newsletter planning refused", extra={"issue_id": issue_id, "reason": reason})
        with self._uow() as uow:
            issue = uow.newsletter_issues.get(org_id, issue_id)
            stored = dict(issue.card or {})
            # The reason names the newsletter (the organization's text): escaped.
            stored["note"] = f"⚠️ Not sent: {safe(reason, 1_000)}"
            uow.newsletter_issues.update(
                org_id,
                issue_id,
                now=self._clock.now(),
                expected=frozenset({IssueStatus.SCHEDULED}),
                holding=lease,
                status=IssueStatus.CANCELLED,
                plan_lease_until=None,
                error=reason,
                card=stored,
            )
            uow.commit()
            cancelled = uow.newsletter_issues.get(org_id, issue_id)
        self._show(cancelled)

    def follow_sends(self, *, limit: int = 100) -> int:
        """Move planned issues to `sending` once an email went, to `sent` once none is
        left queued or sending (updating their cards)."""
        with self._uow() as uow:
            flying = uow.newsletter_issues.in_flight(limit=limit)
        moved = 0
        for org_id, issue_id in flying:
            now = self._clock.now()
            with self._uow() as uow:
                issue = uow.newsletter_issues.get(org_id, issue_id)
                counts = uow.newsletter_issues.send_counts(issue_id)
                waiting = counts.get("queued", 0) + counts.get("sending", 0)
                sent, failed = counts.get("sent", 0), counts.get("failed", 0)
                stored = dict(issue.card or {})
                if waiting == 0:
                    to = IssueStatus.SENT
                    stored["note"] = f"📬 Sent to {sent:,} subscribers"
                    if failed:
                        # The commonest reason, as the outbox recorded it (an opt-out, a
                        # bounce, a mailbox disconnected since the planning, ...).
                        reason, n = uow.newsletter_issues.failure_reasons(issue_id, limit=1)[0]
                        stored["note"] += (
                            f"; {failed:,} not sent ({n:,} of them: {safe(reason, 500)})"
                        )
                elif issue.status == IssueStatus.SCHEDULED and (sent or failed):
                    to = IssueStatus.SENDING
                    stored["note"] = f"📤 Sending: {stored.get('plan_line', '')}"
                else:
                    # Emails held for a disconnected mailbox are said on the card, and
                    # unsaid once they go again.
                    note = self._waiting_note(uow, issue_id, stored)
                    if note is None or note == stored.get("note"):
                        continue
                    to = issue.status
                    stored["note"] = note
                extra: dict[str, Any] = {"sent_at": now} if to == IssueStatus.SENT else {}
                if not uow.newsletter_issues.update(
                    org_id,
                    issue_id,
                    now=now,
                    expected=(
                        frozenset({issue.status})
                        if to == issue.status
                        else sources_of(to) & {IssueStatus.SCHEDULED, IssueStatus.SENDING}
                    ),
                    status=to,
                    card=stored,
                    **extra,
                ):
                    continue
                uow.commit()
                updated = uow.newsletter_issues.get(org_id, issue_id)
            moved += 1
            self._show(updated)
        return moved

    def follow_cancelled(self, *, limit: int = 100) -> int:
        """Show the final figures on the cards of cancelled issues whose emails on their way
        at the cancel have all ended (sent, failed, or withdrawn when the outbox claimed them
        again), then stop following them; return how many cards were finished.

        Three steps, each safe to repeat, so that a process killed between any two leaves
        neither a card stale for good nor a second message: (1) the final note is written
        on the stored card, which keeps its AWAITING_FINAL key; (2) the message is updated
        from the stored card; (3) the key is removed. Killed after (1) or after a refused
        update, the next round updates the message; killed after (2), it updates it once
        more with the same text. Once (3) is committed the issue is not looked at again."""
        with self._uow() as uow:
            ended = uow.newsletter_issues.awaiting_final(limit=limit)
        finished = 0
        for org_id, issue_id in ended:
            now = self._clock.now()
            with self._uow() as uow:
                issue = uow.newsletter_issues.get(org_id, issue_id)
                stored = dict(issue.card or {})
                awaiting = stored.get(AWAITING_FINAL)
                if issue.status != IssueStatus.CANCELLED or awaiting is None:
                    continue
                if issue.cancelled_at is not None and now - issue.cancelled_at < CANCEL_SETTLE:
                    # The cancel's own listener may still be updating the message with the
                    # moment's figures; the final ones come after it, at a later round.
                    continue
                note = self._final_cancel_note(uow, issue, awaiting)
                if note is None:
                    continue  # an email went back on its way meanwhile: a later round
                if stored.get("note") != note:
                    stored["note"] = note
                    uow.newsletter_issues.update(
                        org_id,
                        issue_id,
                        now=now,
                        expected=frozenset({IssueStatus.CANCELLED}),
                        card=stored,
                    )
                    uow.commit()
                    issue = uow.newsletter_issues.get(org_id, issue_id)
            # From here a crash leaves the final figures stored and the message as it was:
            # the issue still awaits them, and the next round updates the message.
            faults.reach("newsletter.cancel_final")
            if not self._show(issue):
                continue  # Slack may take it later: the next round tries again
            with self._uow() as uow:
                current = uow.newsletter_issues.get(org_id, issue_id)
                stored = dict(current.card or {})
                if stored.pop(AWAITING_FINAL, None) is not None:
                    uow.newsletter_issues.update(
                        org_id,
                        issue_id,
                        now=self._clock.now(),
                        expected=frozenset({IssueStatus.CANCELLED}),
                        card=stored,
                    )
                    uow.commit()
            log.info(
                "cancelled newsletter issue followed to its end",
                extra={"org_id": org_id, "issue_id": issue_id},
            )
            finished += 1
        return finished

    @staticmethod
    def _final_cancel_note(
        uow: NewsletterUnitOfWork, issue: NewsletterIssue, awaiting: Any
    ) -> str | None:
        """The card's note with a cancelled issue's final figures (those of its metrics);
        None while one of its emails is still queued or sending."""
        metrics = uow.newsletter_issues.metrics(issue.org_id, issue.id)
        if metrics.queued:
            return None
        commonest = None
        if metrics.failed:
            # The withdrawn rows are `failed` too, with their own reason: not these.
            reasons = uow.newsletter_issues.failure_reasons(issue.id, limit=2)
            commonest = next(((safe(r, 500), n) for r, n in reasons if r != WITHDRAWN_REASON), None)
        by = awaiting.get("by") if isinstance(awaiting, dict) else None
        return final_cancel_note(
            by=str(by or "someone"),
            at=issue.cancelled_at or issue.updated_at,
            planned=metrics.planned,
            sent=metrics.sent,
            sent_before_cancel=issue.sent_before_cancel or 0,
            withdrawn=metrics.withdrawn,
            failed=metrics.failed,
            commonest_failure=commonest,
        )

    @staticmethod
    def _waiting_note(uow: NewsletterUnitOfWork, issue_id: int, card: dict[str, Any]) -> str | None:
        """The card's note while some of the issue's emails wait for a disconnected mailbox,
        the sending note once none does; None when the card has nothing to change."""
        # Asked of the database by prefix: the other reasons of queued rows (a spacing or
        # a cap, each with its own time) are many and would crowd a "top N" out.
        held = uow.newsletter_issues.failure_reasons(
            issue_id, limit=1, status=OutboxStatus.QUEUED, starting=WAITING_FOR_MAILBOX
        )
        if held:
            reason, n = held[0]
            return f"⏸️ {n:,} emails: {safe(reason, 500)}."
        if str(card.get("note", "")).startswith("⏸️"):
            return f"📤 Sending: {card.get('plan_line', '')}"
        return None

    # --- cards ---------------------------------------------------------------------------

    def _show(self, issue: NewsletterIssue, *, note: str | None = None) -> bool:
        """Update the issue's card in place (a failure is logged: the issue is stored).

        False only when Slack failed in a way that may pass (a later update may succeed);
        True when the card was updated, when there is none to update, or when Slack
        refused for good (a deleted message, a channel left)."""
        if self._chat is None or not issue.slack_message_ts or issue.slack_message_ts == "-":
            return True
        card = card_of(issue)
        if card is None or not issue.slack_channel_id:
            return True
        if note is not None:
            card = replace(card, note=note)
        try:
            self._chat.update_card(
                issue.org_id, issue.slack_channel_id, issue.slack_message_ts, card
            )
        except ExternalServiceError as exc:
            log.warning(
                "newsletter card not updated", extra={"issue_id": issue.id, "reason": exc.message}
            )
            return not exc.retryable
        return True

    def _wake(self) -> None:
        if self.on_work is not None:
            self.on_work()

    def _wake_outbox(self) -> None:
        if self.on_planned is not None:
            self.on_planned()


# --- who may ---------------------------------------------------------------------------------


def _owner(actor: Actor | None, newsletter: Newsletter, verb: str) -> None:
    """Changing a newsletter: an admin, its creator, or an organization-wide token."""
    if actor is None or actor.is_admin or actor.user_id == newsletter.created_by:
        return
    raise NotPermitted(f"Only an admin or the newsletter's creator can {verb} it.")


def _editor(actor: Actor | None, newsletter: Newsletter, issue: NewsletterIssue) -> None:
    """Changing an issue: an admin, the newsletter's creator, or the issue's."""
    if actor is None or actor.is_admin:
        return
    if actor.user_id in (newsletter.created_by, issue.created_by):
        return
    raise NotPermitted(
        "Only an admin, the newsletter's creator or the issue's author can change this issue."
    )


def _approver(
    uow: NewsletterUnitOfWork,
    actor: Actor,
    newsletter: Newsletter,
    *,
    verb: str = "approve or reject",
) -> None:
    """Approving, rejecting or cancelling an issue: an admin or the newsletter's creator."""
    if actor.is_admin or actor.user_id == newsletter.created_by:
        return
    creator = uow.users.find(actor.org_id, newsletter.created_by) if newsletter.created_by else None
    who = f" ({creator.label})" if creator else ""
    raise NotPermitted(
        f"Only an admin or the creator of {newsletter.name!r}{who} can {verb} its issues."
    )


def _slack_of(uow: NewsletterUnitOfWork, org_id: int, user_id: int | None) -> str | None:
    user = uow.users.find(org_id, user_id) if user_id is not None else None
    return user.slack_user_id if user else None


def _mention(slack_id: str | None) -> str:
    return f"<@{slack_id}>" if slack_id else "someone"


__all__ = ["Newsletters"]
