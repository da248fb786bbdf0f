"""Ports: the small interfaces use cases need from storage and the outside world.

Repositories return domain objects and take domain values; the unit of work holds one
of each and owns the transaction. Storage implements them on SQLAlchemy; the unit tests
implement them in memory (tests/unit/fakes.py).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from domain.accounts import Org, OrgSummary, StoredToken, TokenSummary, User
from domain.analytics import AnalyticsWindow, CampaignAnalytics, DigestFacts
from domain.analytics_settings import AnalyticsSettings
from domain.audience import AudienceCriteria, AudienceSize
from domain.cadence import (
    CadenceSettings,
    ContactFacts,
    DueEnrollment,
    GuardCounts,
    Settlement,
)
from domain.campaigns import Campaign, CampaignFields
from domain.cards import (
    Card,
    CardState,
    CardType,
    CardView,
    InFlightCard,
    Priority,
    SnoozedCard,
)
from domain.classification import (
    Category,
    Classification,
    ClassifyRequest,
    CorrectionExample,
    Sentiment,
)
from domain.contacts import ContactContext, TokenScope, UserRole
from domain.conversations import ContactRef, ConversationEntry, LinkKeys, SendRef
from domain.corrections import (
    CorrectionView,
    LabelSet,
    NewCorrection,
    ProposalStatus,
    RelabelTarget,
    RuleProposalView,
    SameCorrections,
)
from domain.digests import DigestPost as DigestPostView
from domain.digests import Frequency as DigestFrequency
from domain.digests import NewPost as NewDigestPost
from domain.digests import NewSubscription
from domain.digests import Subscription as DigestSubscriptionView
from domain.drafting import Draft, DraftRequest
from domain.email_preferences import EmailType
from domain.engagement import (
    ContactEngagement,
    EngagementEvent,
    EngagementKey,
    NewEngagement,
    ScoredEvent,
)
from domain.enrollments import EnrollmentGroup, EnrollmentRow
from domain.errors import ExternalServiceError
from domain.inbound_actions import EnrollmentRef
from domain.intents import KnownPerson, ProposedTime, ReferralCandidate, ResumeDate
from domain.jobs import (
    EnrollmentStatus,
    Job,
    JobKind,
    JobStatus,
    JobTaskView,
    TargetSelection,
    TaskStatus,
)
from domain.last_look import LookResult
from domain.lead_scoring import LeadContext, LeadFacts
from domain.mail import OutgoingEmail, SendOutcome
from domain.mailboxes import (
    AccountTokens,
    ConsentRequest,
    ConsumedState,
    GmailAccountView,
    Grant,
    MailboxAllowance,
    MailboxIdentity,
    RevokeResult,
)
from domain.replies import ReplyContext, ReplyDraft
from domain.reply_policy import ReplyPolicy
from domain.reply_routing import ChannelStatus, RoutingFacts
from domain.rules import Rule, RuleType
from domain.sending import (
    AccessTokenUpdate,
    MailboxSlot,
    MailMessage,
    MessageRef,
    OutboxEmail,
)
from domain.suppression import ContactSummary
from domain.targeting import (
    RankedStaleClient,
    StaleClient,
    StaleClientFacts,
    StaleTargetingSettings,
    TargetingRun,
)
from domain.templates import EmailTemplate, EmailTemplateFields
from domain.tracking import TrackedSend, TrackingHit, TrackingPlan
from domain.understanding import (
    InboundEmailDetail,
    InboundEmailSummary,
    InboundFilter,
    InboundMessage,
    Recorded,
    RequeueCounts,
)


class Transaction(Protocol):
    """What every unit of work is: a `with` block that commits once or rolls back."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Commit the transaction."""
        ...


# --- unsubscribe requests by email ---


class UnsubscribeTokenReader(Protocol):
    """Reads the token of our List-Unsubscribe mailto plus-address (`+unsub-<token>`)."""

    def read(self, token: str) -> tuple[int, int] | None:
        """Return (org_id, contact_id) of a genuine token, None for a forged or garbled one."""
        ...


# --- catalog ---


class CampaignRepository(Protocol):
    """Campaigns of one organization."""

    def add(self, org_id: int, fields: CampaignFields, *, created_by: int | None) -> Campaign:
        """Store a new campaign."""
        ...

    def get(self, org_id: int, campaign_id: int) -> Campaign:
        """Return a campaign or raise NotFound."""
        ...

    def find_by_name(self, org_id: int, name: str) -> Campaign | None:
        """Return the campaign with this name (case-insensitive), if any."""
        ...

    def list(self, org_id: int, *, status: str | None, limit: int, offset: int) -> list[Campaign]:
        """Return campaigns, newest first."""
        ...

    def update(
        self, org_id: int, campaign_id: int, fields: CampaignFields, *, now: datetime
    ) -> Campaign:
        """Replace a campaign's fields."""
        ...


class TemplateRepository(Protocol):
    """Email templates of one organization."""

    def add(
        self,
        org_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        created_by: int | None,
    ) -> EmailTemplate:
        """Store a new template."""
        ...

    def get(self, org_id: int, template_id: int) -> EmailTemplate:
        """Return a template or raise NotFound."""
        ...

    def list(self, org_id: int, *, category: str | None) -> list[EmailTemplate]:
        """Return templates by name."""
        ...

    def update(
        self,
        org_id: int,
        template_id: int,
        fields: EmailTemplateFields,
        *,
        variables: Sequence[str],
        now: datetime,
    ) -> EmailTemplate:
        """Replace a template's fields."""
        ...

    def delete(self, org_id: int, template_id: int) -> None:
        """Delete a template or raise NotFound."""
        ...

    def existing_ids(self, org_id: int, ids: Sequence[int]) -> set[int]:
        """Return which of these template ids exist in the organization."""
        ...


class AudienceRepository(Protocol):
    """The contacts a targeting reaches."""

    def size(
        self, org_id: int, criteria: AudienceCriteria, *, now: datetime, sample_size: int
    ) -> AudienceSize:
        """Return how many contacts match and a sample of them, in one query."""
        ...

    def target_contact_ids(
        self, org_id: int, target: TargetSelection, *, now: datetime
    ) -> Iterator[list[int]]:
        """Stream the reachable contacts a job targets, in id order, each once, in chunks
        (with `stale_top`: in the ranking's order, each client's best contact first)."""
        ...

    def target_count(self, org_id: int, target: TargetSelection, *, now: datetime) -> int:
        """Count the reachable contacts a job targets."""
        ...


class CatalogUnitOfWork(Transaction, Protocol):
    """One transaction over the catalog's repositories; commits once."""

    # Read-only properties, so that a unit of work holding concrete repositories fits.
    @property
    def campaigns(self) -> CampaignRepository: ...

    @property
    def templates(self) -> TemplateRepository: ...

    @property
    def audience(self) -> AudienceRepository: ...


# --- outreach ---


class JobRepository(Protocol):
    """Jobs of one organization, with atomic metric counters."""

    def add(
        self,
        org_id: int,
        *,
        name: str,
        description: str | None,
        params: dict[str, Any],
        owner_id: int | None,
        campaign_id: int | None,
        request_key: str | None = None,
    ) -> Job:
        """Store a pending job (`request_key`: the request that creates it, unique)."""
        ...

    def find_by_request_key(self, org_id: int, request_key: str) -> Job | None:
        """Return the job a request created, if it ran before."""
        ...

    def inbox_job_id(self, org_id: int, *, now: datetime) -> int:
        """Return the id of the organization's replies inbox job, creating it on first use
        (two first uses at once make one; the caller's unit of work carries on)."""
        ...

    def get(self, org_id: int, job_id: int) -> Job:
        """Return a job or raise NotFound."""
        ...

    def lock_status(self, org_id: int, job_id: int) -> JobStatus:
        """Read a job's status and hold its row until the transaction ends."""
        ...

    def update_details(
        self,
        org_id: int,
        job_id: int,
        *,
        expected: Iterable[JobStatus],
        name: str | None = None,
        description: str | None = None,
        clear_description: bool = False,
        params: dict[str, Any] | None = None,
    ) -> bool:
        """Change a job's name, description or params if its status is one of `expected`
        (compare-and-set); the fields left None are kept."""
        ...

    def list(
        self,
        org_id: int,
        *,
        status: str | None = None,
        campaign_id: int | None = None,
        kind: JobKind | None = None,
        limit: int = 50,
    ) -> builtins.list[Job]:
        """Return jobs (of one kind, if given), newest first."""
        ...

    def set_status(
        self,
        org_id: int,
        job_id: int,
        to: JobStatus,
        *,
        expected: Iterable[JobStatus],
        now: datetime,
        last_error: str | None = None,
        cancelled_by: int | None = None,
    ) -> bool:
        """Move a job's status if it is still in one of `expected` (compare-and-set)."""
        ...

    def claim_planning(
        self, org_id: int, job_id: int, *, now: datetime, lease_until: datetime
    ) -> bool:
        """Take the job's planning until `lease_until`, unless it is planned or another plans it."""
        ...

    def extend_planning(self, job_id: int, *, lease_until: datetime) -> None:
        """Keep planning a long audience: push the planning lease forward."""
        ...

    def mark_planned(self, job_id: int, *, now: datetime) -> None:
        """Record that every step-0 task of the job exists."""
        ...

    def unplanned(self, *, now: datetime, limit: int) -> builtins.list[tuple[int, int]]:
        """Return (org id, job id) of jobs to plan: pending or half planned, with no planner."""
        ...

    def idle_running(self, *, after_id: int, limit: int) -> builtins.list[tuple[int, int]]:
        """Return (org id, job id) of planned running campaign jobs without an open task."""
        ...

    def bump(self, job_id: int, **deltas: int) -> None:
        """Add to a job's metric counters atomically."""
        ...

    def note_error(self, job_id: int, reason: str, *, count: int = 1) -> None:
        """Count failures on a job and keep the reason as the job's latest error."""
        ...

    def clear_error(self, job_id: int, *, starting: str) -> None:
        """Forget the job's latest error if it starts with `starting`."""
        ...


class TaskRepository(Protocol):
    """Job tasks: the work queue."""

    def add_many(self, org_id: int, job_id: int, rows: Sequence[dict[str, Any]]) -> int:
        """Insert pending tasks (dicts of kind, step, batch, contact_id, input)."""
        ...

    def lock_claimed(self, tasks: Sequence[JobTaskView]) -> set[int]:
        """Lock the tasks this claim still holds and return their ids."""
        ...

    def cancel_orphaned(self, *, now: datetime) -> int:
        """Cancel running tasks whose lease ran out after their job ended."""
        ...

    def finish(
        self,
        task_id: int,
        status: TaskStatus,
        *,
        now: datetime,
        output: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Finish a running task; return False if it was not running any more."""
        ...

    def finish_many(
        self, results: Sequence[tuple[int, dict[str, Any]]], status: TaskStatus, *, now: datetime
    ) -> int:
        """Finish running tasks with their outputs; return how many."""
        ...

    def cancel_pending(self, org_id: int, job_id: int, *, now: datetime) -> int:
        """Cancel a job's pending tasks; return how many."""
        ...

    def batch_drafted(self, org_id: int, job_id: int, batch: int) -> bool:
        """Tell whether every draft task of a job's batch has finished."""
        ...

    def next_batch(self, org_id: int, job_id: int) -> int:
        """The batch number after the job's last one (0 for a job without tasks)."""
        ...

    def has_open(self, org_id: int, job_id: int) -> bool:
        """Tell whether a job still has a pending or running task."""
        ...


class EnrollmentRepository(Protocol):
    """Contacts enrolled in a job's cadence."""

    def add_many(
        self,
        org_id: int,
        job_id: int,
        contact_ids: Sequence[int],
        *,
        next_due_at: datetime | None,
        step_started_at: datetime | None = None,
    ) -> dict[int, int]:
        """Enroll contacts not yet enrolled in the job; return contact id → new enrollment id."""
        ...

    def count(self, job_id: int) -> int:
        """Count a job's enrollments."""
        ...

    def stop_for_job(self, org_id: int, job_id: int, *, reason: str, now: datetime) -> int:
        """Stop every active or paused enrollment of a job."""
        ...

    def set_thread(self, enrollment_id: int, thread_id: str) -> None:
        """Remember the Gmail thread of an enrollment's emails."""
        ...

    def list_for_job(
        self,
        org_id: int,
        job_id: int,
        *,
        status: EnrollmentStatus | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> builtins.list[EnrollmentRow]:
        """Return a job's enrollments with their contacts, in id order, after the id
        `after` (a page at a time), of one status if given."""
        ...

    def summary_for_job(self, org_id: int, job_id: int) -> builtins.list[EnrollmentGroup]:
        """Count a job's enrollments by status, stop reason and kind of wait (one query)."""
        ...


class CardRepository(Protocol):
    """Cards; state changes are compare-and-set so concurrent clicks act once."""

    def add(
        self,
        org_id: int,
        *,
        job_id: int | None,
        task_id: int | None,
        contact_id: int | None,
        client_id: int | None,
        type: CardType,
        state: CardState,
        priority: Priority,
        title: str,
        description: str | None,
        rationale: str | None,
        action_payload: dict[str, Any],
        enrollment_id: int | None = None,
    ) -> Card:
        """Store a new card."""
        ...

    def add_many(self, org_id: int, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert cards; return their ids in the order given."""
        ...

    def get(self, org_id: int, card_id: int) -> Card:
        """Return a card of the organization or raise NotFound."""
        ...

    def compare_and_set(
        self,
        org_id: int,
        card_id: int,
        *,
        expected: Iterable[CardState],
        to: CardState,
        now: datetime,
        **changes: Any,
    ) -> bool:
        """Move a card to `to` only if it is still in one of `expected`; True if it moved."""
        ...

    def stale_in_flight(self, *, before: datetime, limit: int) -> list[InFlightCard]:
        """Return cards left `approved` or `executing` since before `before`, oldest first."""
        ...

    def reset_unsent(self, org_id: int, card_id: int, *, before: datetime, now: datetime) -> bool:
        """Put an `executing` card that never reached Gmail back to `approved`, to run again."""
        ...

    def update_fields(self, org_id: int, card_id: int, *, now: datetime, **changes: Any) -> None:
        """Change a card's fields (not its state)."""
        ...

    def set_message(self, card_id: int, *, channel: str, ts: str) -> None:
        """Remember the chat message that shows a card."""
        ...

    def has_undecided(self, org_id: int, job_id: int) -> bool:
        """Tell whether a card of the job still waits for review or for its send."""
        ...

    def withdraw_for_job(
        self, org_id: int, job_id: int, *, reason: str, now: datetime
    ) -> list[tuple[int, str | None]]:
        """Withdraw every card of a job the state machine lets become withdrawn; return
        (card id, chat message ts) of the cards withdrawn."""
        ...

    def list_for_batch(
        self, org_id: int, job_id: int, batch: int, *, states: Sequence[CardState]
    ) -> list[Card]:
        """Return the cards drafted by a batch of a job's tasks."""
        ...

    def snooze(
        self,
        org_id: int,
        card_id: int,
        *,
        until: datetime,
        expected: Iterable[CardState],
        now: datetime,
        action_payload: dict[str, Any],
    ) -> bool:
        """Snooze a card until `until` only if it is still in one of `expected`; True if so."""
        ...

    def unsnooze(self, org_id: int, card_id: int, *, now: datetime) -> bool:
        """End a card's snooze now; True if it was snoozed."""
        ...

    def claim_due_snoozed(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[SnoozedCard]:
        """Claim cards whose snooze ended by `now`, oldest first: each one's `snoozed_until`
        becomes `lease_until`, so a sweep that dies leaves it to be claimed again then."""
        ...

    def end_snooze(
        self, org_id: int, card_id: int, *, claimed_until: datetime, now: datetime
    ) -> bool:
        """Clear a claimed card's snooze while it still holds the claim; True if cleared."""
        ...


class ContactContextRepository(Protocol):
    """Contacts as drafting and cards see them, and what sending records on them."""

    def contact_context(self, org_id: int, contact_id: int, *, now: datetime) -> ContactContext:
        """Return a contact with its client and order history, or raise NotFound."""
        ...

    def contact_contexts(
        self, org_id: int, contact_ids: list[int], *, now: datetime
    ) -> dict[int, ContactContext]:
        """Return the contexts of many contacts (missing ones are left out)."""
        ...

    def firm_name(self, org_id: int) -> str:
        """Return the organization's display name."""
        ...

    def thread_to_continue(self, enrollment_id: int | None) -> str | None:
        """Return the Gmail thread an enrollment's emails continue."""
        ...

    def touch_contacted(self, org_id: int, contact_id: int, *, at: datetime) -> None:
        """Record that a contact was just emailed."""
        ...

    def apply_profile_changes(
        self, org_id: int, contact_id: int, changes: dict[str, Any], *, at: datetime
    ) -> None:
        """Apply an update_profile task's changes to a contact."""
        ...


class EventKeyRepository(Protocol):
    """Idempotency keys: a thing keyed once is done once."""

    def claim(self, source: str, key: str, *, org_id: int | None = None) -> bool:
        """Record a key; False if it was recorded before."""
        ...


class CadenceRepository(Protocol):
    """The cadence tick's rows: due enrollments, their facts, and how each is left."""

    def claim_due(
        self, *, now: datetime, limit: int, org_id: int | None = None
    ) -> list[DueEnrollment]:
        """Lock up to `limit` active enrollments due by `now` (of one organization, given
        `org_id`), in due order, skipping rows another transaction holds (FOR UPDATE SKIP
        LOCKED on PostgreSQL)."""
        ...

    def resume_paused(self, *, now: datetime, limit: int, org_id: int | None = None) -> int:
        """Make enrollments whose pause ended (an out-of-office's return) active and due."""
        ...

    def contact_facts(
        self, org_id: int, contact_ids: Sequence[int], *, now: datetime
    ) -> dict[int, ContactFacts]:
        """Return what the stop rules and fatigue limits read of these contacts."""
        ...

    def settle(self, rows: Sequence[Settlement], *, now: datetime) -> None:
        """Write the tick's verdicts on the enrollments it claimed."""
        ...

    def step_done(
        self, enrollment_id: int, *, step: int, at: datetime, final: bool = False
    ) -> bool:
        """Record that step `step` of an enrollment ended (sent, done, skipped): the next
        step counts from `at` and is due for the tick to judge (`final`: it was the last
        step, the enrollment is completed); False when it was recorded already or the
        enrollment is elsewhere (compare-and-set)."""
        ...

    def defer(self, enrollment_id: int, *, step: int, until: datetime, reason: str) -> bool:
        """Put an enrollment whose step `step` could not run back in the queue at `until`."""
        ...

    def stop(self, enrollment_id: int, *, reason: str, at: datetime) -> bool:
        """Stop a running enrollment with the reason (a card rejected, a reply found)."""
        ...

    def enrollment_state(self, enrollment_id: int) -> tuple[str, str | None] | None:
        """Return an enrollment's status and stop reason (None: it is gone)."""
        ...

    def resume_job(self, org_id: int, job_id: int, *, now: datetime) -> int:
        """Make the enrollments a job's pause held active and due again."""
        ...

    def has_open(self, org_id: int, job_id: int) -> bool:
        """True while a job has steps to come: an enrollment due for the tick, paused until
        a date, or held by the job's pause (a step waiting on its card holds the job
        through the card)."""
        ...

    def guard_counts(self, org_id: int, job_id: int, *, since: datetime) -> GuardCounts:
        """A job's sends, hard bounces and opt-outs since `since`."""
        ...

    def jobs_with_recent_losses(
        self, *, since: datetime, org_id: int | None = None
    ) -> list[tuple[int, int]]:
        """(org id, job id) of the jobs that lost contacts to a bounce or an opt-out since
        `since` (the deliverability guard looks at them every tick)."""
        ...

    def settings(self, org_id: int) -> CadenceSettings:
        """The organization's cadence settings (defaults where it set none)."""
        ...

    def save_settings(self, org_id: int, settings: CadenceSettings) -> None:
        """Store the organization's cadence settings."""
        ...


class OutreachUnitOfWork(Transaction, Protocol):
    """One transaction over the repositories outreach uses; commits once."""

    # Read-only properties, so that a unit of work holding concrete repositories fits.
    @property
    def campaigns(self) -> CampaignRepository: ...

    @property
    def templates(self) -> TemplateRepository: ...

    @property
    def audience(self) -> AudienceRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def tasks(self) -> TaskRepository: ...

    @property
    def enrollments(self) -> EnrollmentRepository: ...

    @property
    def cards(self) -> CardRepository: ...

    @property
    def contexts(self) -> ContactContextRepository: ...

    @property
    def events(self) -> EventKeyRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def orgs(self) -> TriageChannelRepository: ...

    @property
    def reply_actions(self) -> ReplyActionRepository: ...

    @property
    def cadence(self) -> CadenceRepository: ...

    @property
    def chat_notices(self) -> ChatNoticeRepository: ...

    @property
    def engagement(self) -> EngagementRepository: ...

    @property
    def targeting(self) -> TargetingRepository: ...


class ChatNotifier(Protocol):
    """Shows cards to humans (Slack in production)."""

    def post_card(
        self, view: CardView, *, channel: str | None, owner_slack_id: str | None
    ) -> tuple[str, str]:
        """Post a card; return (channel id, message ts). Raise ExternalServiceError."""
        ...

    def update_card(self, view: CardView) -> None:
        """Update a card's message in place after a transition."""
        ...

    def replace_message(self, org_id: int, *, channel: str, ts: str, text: str) -> None:
        """Replace a message with one line and no buttons (a card posted again elsewhere)."""
        ...

    def post_bulk(
        self,
        org_id: int,
        *,
        job_name: str,
        job_id: int,
        batch: int,
        cards: list[Card],
        channel: str | None,
        owner_slack_id: str | None,
    ) -> None:
        """Post one message for a batch of cards with an "Approve all" button."""
        ...


class Mailer(Protocol):
    """Sends email from a rep's own mailbox (Gmail in production)."""

    def send(self, email: OutgoingEmail) -> SendOutcome:
        """Send (or queue) an email; never sends the same card twice."""
        ...


class DraftModel(Protocol):
    """A language model that personalises a draft (Claude in production)."""

    def personalize(self, request: DraftRequest) -> Draft:
        """Return a personalised draft; raise ExternalServiceError or InvalidInput on failure."""
        ...


class SecretBoxPort(Protocol):
    """Encrypts secrets kept inside JSON params."""

    def encrypt(self, plaintext: str) -> str:
        """Encrypt text to a printable token."""
        ...


# --- accounts ---


class OrgRepository(Protocol):
    """Organizations and the Slack workspaces they are bound to."""

    def add(self, *, slug: str, name: str) -> Org:
        """Store a new organization (the slug is valid and free)."""
        ...

    def find(self, org_id: int) -> Org | None:
        """Return the organization with this id, if any."""
        ...

    def find_by_slug(self, slug: str) -> Org | None:
        """Return the organization with this slug, if any."""
        ...

    def find_by_slack_team(self, team_id: str) -> Org | None:
        """Return the organization bound to this Slack workspace, if any."""
        ...

    def set_slack_team(self, org_id: int, team_id: str) -> None:
        """Record the Slack workspace an organization is bound to."""
        ...

    def list_summaries(self) -> list[OrgSummary]:
        """Return every organization with its workspace, admins and counts, by slug."""
        ...


class UserRepository(Protocol):
    """Users of organizations; `find` is the one lookup of a user by id."""

    def find(self, org_id: int, user_id: int) -> User | None:
        """Return the user with this id in the organization, if any."""
        ...

    def find_by_email(self, org_id: int, email: str) -> User | None:
        """Return the user with this (normalized) address in the organization, if any."""
        ...

    def find_by_slack_id(self, org_id: int, slack_user_id: str) -> User | None:
        """Return the user linked to this Slack id in the organization, if any."""
        ...

    def has_admin(self, org_id: int) -> bool:
        """Tell whether the organization has an admin."""
        ...

    def list_admins(self, org_id: int) -> builtins.list[User]:
        """Return the organization's admins, by id."""
        ...

    def add(
        self,
        org_id: int,
        *,
        email: str,
        name: str | None,
        role: UserRole,
        slack_user_id: str | None,
    ) -> User:
        """Store a new user."""
        ...

    def save(self, user: User) -> None:
        """Write a user's name, role and Slack id."""
        ...


class TokenRepository(Protocol):
    """API tokens, kept as hashes of their secrets."""

    def add(
        self,
        org_id: int,
        *,
        name: str,
        scope: TokenScope,
        user_id: int | None,
        token_hash: str,
        prefix: str,
    ) -> int:
        """Store a new token; return its id."""
        ...

    def find_by_hash(self, token_hash: str) -> StoredToken | None:
        """Return the token with this hash, if any."""
        ...

    def touch(self, token_id: int, *, at: datetime) -> None:
        """Record when a token was last used."""
        ...

    def revoke(self, org_id: int, token_id: int, *, at: datetime) -> bool:
        """Revoke a token of the organization; False if it has no such token."""
        ...

    def list_summaries(self, org_id: int) -> list[TokenSummary]:
        """Return the organization's tokens, oldest first."""
        ...


class AccountsUnitOfWork(Transaction, Protocol):
    """One transaction over the account repositories; commits once."""

    # Read-only properties, so that a unit of work holding concrete repositories fits.
    @property
    def orgs(self) -> OrgRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def tokens(self) -> TokenRepository: ...


# --- mailboxes ---


class GmailAccountRepository(Protocol):
    """Reps' mailboxes; tokens are encrypted at rest by the implementation."""

    def save_connection(
        self,
        org_id: int,
        *,
        user_id: int,
        email: str,
        scopes: Sequence[str],
        refresh_token: str,
        access_token: str | None,
        access_token_expires_at: datetime | None,
        daily_send_cap: int,
        min_send_interval_seconds: int,
        now: datetime,
    ) -> GmailAccountView:
        """Store a fresh consent: the mailbox becomes the user's only connected one.

        Raise MailboxTaken when the mailbox is connected for another user.
        """
        ...

    def for_user(
        self, org_id: int, user_id: int, *, connected_only: bool = False
    ) -> GmailAccountView | None:
        """Return the user's mailbox: the connected one, else the one changed last."""
        ...

    def get(self, account_id: int) -> GmailAccountView:
        """Return a mailbox or raise NotFound."""
        ...

    def tokens(self, account_id: int) -> AccountTokens | None:
        """Return a connected mailbox's decrypted tokens, or None once disconnected."""
        ...

    def save_access_token(
        self, account_id: int, *, access_token: str, expires_at: datetime | None, now: datetime
    ) -> None:
        """Keep a refreshed access token (only while the mailbox is connected)."""
        ...

    def mark_disconnected(self, account_id: int, *, reason: str, now: datetime) -> bool:
        """Forget a mailbox's tokens and say why; True if it was connected until now."""
        ...

    def sends_since(self, account_id: int, since: datetime) -> int:
        """Count a mailbox's sends (made or in flight) since a moment."""
        ...


class OAuthStateRepository(Protocol):
    """Consents in progress; each is consumed once by compare-and-set."""

    def add(
        self,
        org_id: int,
        *,
        user_id: int,
        nonce: str,
        code_verifier: str,
        redirect_uri: str,
        expires_at: datetime,
    ) -> None:
        """Remember a consent that was just started (its PKCE verifier encrypted at rest)."""
        ...

    def consume(
        self, nonce: str, *, org_id: int, user_id: int, now: datetime
    ) -> ConsumedState | None:
        """Use a consent once: None if unknown, for someone else, expired or already used."""
        ...

    def purge(self, *, expired_before: datetime) -> int:
        """Delete consents that expired before the given time; return how many."""
        ...


class MailboxAllowanceRepository(Protocol):
    """Which mailbox addresses the users of an organization may connect."""

    def for_user(self, org_id: int, user_id: int) -> MailboxAllowance:
        """Return which addresses a user may connect; NotFound for an unknown user."""
        ...

    def role_of(self, org_id: int, user_id: int) -> str | None:
        """Return a user's role, or None for an unknown user."""
        ...

    def allow(
        self,
        org_id: int,
        *,
        user_email: str,
        address: str | None,
        allowed_by: str,
        now: datetime,
    ) -> MailboxAllowance:
        """Let a user connect one other address (None takes it back), recording who and when;
        NotFound when no user has this email."""
        ...


class MailboxUnitOfWork(Transaction, Protocol):
    """One transaction over the mailbox repositories; commits once."""

    @property
    def gmail_accounts(self) -> GmailAccountRepository: ...

    @property
    def oauth_states(self) -> OAuthStateRepository: ...

    @property
    def mailbox_allowances(self) -> MailboxAllowanceRepository: ...


class StateSigner(Protocol):
    """Signs the OAuth state (LinkSigner in production)."""

    def sign(self, payload: dict[str, Any], *, expires_in: int | None = None) -> str:
        """Return a signed token carrying the payload, valid `expires_in` seconds."""
        ...

    def verify(self, token: str) -> dict[str, Any]:
        """Return the payload of a genuine, unexpired token; raise InvalidInput otherwise."""
        ...


class MailboxAuthorization(Protocol):
    """Google's half of connecting a mailbox (OAuth 2.0 with PKCE, the Gmail profile)."""

    def consent_url(self, *, state: str, login_hint: str | None) -> ConsentRequest:
        """Return Google's consent URL for offline access, with a fresh PKCE verifier."""
        ...

    def exchange_code(self, code: str, *, code_verifier: str) -> Grant:
        """Exchange an authorization code; raise ConsentRefused when Google will not."""
        ...

    def open_mailbox(self, grant: Grant) -> MailboxIdentity:
        """Return the address of the mailbox a grant opens (refreshing its access token if
        needed); raise ExternalServiceError when the mailbox cannot be opened."""
        ...

    def revoke(self, token: str) -> RevokeResult:
        """Revoke a refresh (or access) token, which revokes the whole grant."""
        ...

    def discard_grant(self, token: str) -> None:
        """Revoke a grant Salesbot will not keep, waiting briefly; the outcome is not needed."""
        ...


# --- suppression ---


class OptOutRepository(Protocol):
    """Contacts' opt-outs and what an opt-out stops."""

    def summary(self, org_id: int, contact_id: int) -> ContactSummary | None:
        """Return a contact's address and opt-out state, with its organization's name."""
        ...

    def mark_opted_out(self, org_id: int, contact_id: int, *, at: datetime) -> bool:
        """Stamp the contact's opt-out unless it has one; True if this call stamped it."""
        ...

    def stop_enrollments(
        self, org_id: int, contact_id: int, *, reason: str, at: datetime, min_step: int = 0
    ) -> int:
        """Stop the contact's active and paused enrollments (those at `min_step` or later);
        return how many."""
        ...

    def cancel_queued_emails(self, org_id: int, contact_id: int, *, email: str, reason: str) -> int:
        """Fail every queued email to the contact (by id or address); return how many."""
        ...

    def undo_opt_out(self, org_id: int, contact_id: int, *, at: datetime) -> bool:
        """Clear the contact's opt-out (a rep found the message that made it was no removal
        request); True if it had one."""
        ...

    def email_preferences(
        self, org_id: int, contact_id: int, *, lock: bool
    ) -> Mapping[str, object] | None:
        """Return a contact's stored email preferences (`lock`: hold the row until the
        transaction ends); None if the contact does not exist."""
        ...

    def save_email_preferences(
        self, org_id: int, contact_id: int, preferences: Mapping[str, bool], *, at: datetime
    ) -> None:
        """Store a contact's email preferences."""
        ...


class SuppressionUnitOfWork(Transaction, Protocol):
    """One transaction over the opt-out repository and the engagement history (where an
    opt-out is recorded and scored); commits once."""

    @property
    def opt_outs(self) -> OptOutRepository: ...

    @property
    def engagement(self) -> EngagementRepository: ...


# --- engagement ---


class EngagementRepository(Protocol):
    """Contacts' engagement history and the scores kept on contacts and clients.

    Used inside the caller's unit of work; nothing here commits.
    """

    def lock_contacts(
        self, org_id: int, contact_ids: Sequence[int]
    ) -> dict[int, ContactEngagement]:
        """Return the engagement of the contacts that exist, holding their rows (locked in
        id order) until the transaction ends, so two writers of a contact take turns."""
        ...

    def recorded(
        self, org_id: int, keys: Sequence[tuple[int, EngagementEvent, EngagementKey]]
    ) -> set[tuple[int, EngagementEvent, EngagementKey]]:
        """Return which of these (contact id, event, reference) the history already holds."""
        ...

    def timelines(self, org_id: int, since: Mapping[int, datetime]) -> dict[int, list[ScoredEvent]]:
        """Return each contact's history rows from (at the latest) its `since` on, all of
        them, in time order (ties by id), after the latest scored row before that."""
        ...

    def add(self, entries: Sequence[NewEngagement]) -> list[int]:
        """Store history rows; return their ids, in order (ascending)."""
        ...

    def rescore(self, scores: Sequence[tuple[int, float]]) -> None:
        """Change rows' `score_after` (history id, score): an earlier event came after them."""
        ...

    def save_contacts(self, org_id: int, states: Sequence[ContactEngagement]) -> None:
        """Write contacts' score, trend and interaction dates."""
        ...

    def mark_client_re_engaged(
        self, org_id: int, client_id: int, *, at: datetime, stale_before: datetime
    ) -> bool:
        """Set the client's `re_engaged_at` if it had not ordered since `stale_before` and
        is not re-engaged since its last order (compare-and-set); True if this call set it."""
        ...

    def count_events(
        self, org_id: int, contact_id: int, event: EngagementEvent, since: datetime
    ) -> int:
        """Count the contact's events of one kind that occurred at or after `since`."""
        ...

    def message_events(
        self, org_id: int, inbound_email_id: int
    ) -> builtins.list[tuple[int, int, EngagementEvent, datetime]]:
        """Return the history rows an inbound message recorded: (id, contact id, event,
        occurred at), in time order."""
        ...

    def delete(self, ids: Sequence[int]) -> None:
        """Remove history rows (a message read wrongly); the caller re-scores the rest."""
        ...

    def latest_event_at(
        self, org_id: int, contact_id: int, events: Sequence[EngagementEvent]
    ) -> datetime | None:
        """Return when the contact's latest event of these kinds occurred, if any."""
        ...

    def refresh_lead_scores(self, org_id: int, contact_ids: Sequence[int], *, at: datetime) -> None:
        """Score again contacts whose engagement just changed (domain.lead_scoring's
        `rescore_contacts`, as of `at`), in the same transaction."""
        ...


class EngagementUnitOfWork(Transaction, Protocol):
    """One transaction over the engagement history; commits once."""

    @property
    def engagement(self) -> EngagementRepository: ...


# --- lead scores and stale-client targeting ---


class LeadScoreRepository(Protocol):
    """What scoring contacts reads and writes (domain.lead_scoring); nothing commits."""

    def lead_context(self, org_id: int) -> LeadContext:
        """Return the organization's lead-scoring settings and its last daily run's figures."""
        ...

    def busiest_client_orders(self, org_id: int, *, since: datetime, until: datetime) -> int:
        """Return the most orders one client of the organization placed in [since, until]."""
        ...

    def lead_facts_of(
        self,
        org_id: int,
        *,
        contact_ids: Sequence[int],
        client_ids: Sequence[int],
        since: datetime,
        until: datetime,
        busiest: int,
    ) -> builtins.list[LeadFacts]:
        """Return the facts of these contacts and of every contact of these clients, their
        clients' orders counted in [since, until]."""
        ...

    def save_lead_scores(
        self, org_id: int, scores: Sequence[tuple[int, int]], *, at: datetime
    ) -> None:
        """Write (contact id, score) pairs and `lead_score_at` in bulk."""
        ...


class TargetingRepository(LeadScoreRepository, Protocol):
    """Lead scores of a whole organization and its ranking of stale clients."""

    def targeting_settings(self, org_id: int) -> StaleTargetingSettings:
        """Return the organization's stale-client targeting settings."""
        ...

    def client_order_counts(
        self, org_id: int, *, since: datetime, until: datetime
    ) -> dict[int, int]:
        """Return each client's orders in [since, until] (clients without any left out)."""
        ...

    def lead_facts_page(
        self,
        org_id: int,
        *,
        after_id: int,
        limit: int,
        counts: Mapping[int, int],
        busiest: int,
    ) -> builtins.list[LeadFacts]:
        """Return the facts of the next `limit` contacts after `after_id`, in id order."""
        ...

    def stale_clients(
        self, org_id: int, *, stale_before: datetime, now: datetime, peak_since: datetime
    ) -> builtins.list[StaleClientFacts]:
        """Return the clients whose last order is before `stale_before`, with their orders
        and their best reachable contact (engagement peak since `peak_since`)."""
        ...

    def replace_ranking(
        self, org_id: int, ranked: Sequence[RankedStaleClient], *, run: TargetingRun
    ) -> None:
        """Replace the organization's ranking as a whole and record the run."""
        ...

    def last_run(self, org_id: int) -> TargetingRun | None:
        """Return the organization's latest run (None: never tried)."""
        ...

    def claim_due_org(
        self, *, now: datetime, computed_before: datetime, attempted_before: datetime
    ) -> int | None:
        """Claim the organization whose ranking is the oldest (computed before
        `computed_before`, or never) and not tried since `attempted_before`: mark it tried
        at `now` (compare-and-set) and return its id; None when none is due."""
        ...

    def record_failure(self, org_id: int, *, error: str) -> None:
        """Record why the organization's run failed (shown until one succeeds)."""
        ...

    def ranking(self, org_id: int, *, limit: int) -> builtins.list[StaleClient]:
        """Return the stored ranking, best first, with client and contact names."""
        ...


class TargetingUnitOfWork(Transaction, Protocol):
    """One transaction over lead scores and the ranking; commits once a page."""

    @property
    def targeting(self) -> TargetingRepository: ...


# --- analytics ---


class AnalyticsReader(Protocol):
    """The numbers of a window as domain/analytics.py defines them: a campaign's (the API)
    and the digest's, and the campaigns' stored lifetime metrics."""

    def campaign_analytics(
        self, org_id: int, campaign_id: int, window: AnalyticsWindow
    ) -> CampaignAnalytics:
        """Return a campaign's counts of the window, in total, by step and by rep, with
        its opens and clicks; NotFound for a campaign not of this organization."""
        ...

    def campaign_lifetime_window(
        self, org_id: int, campaign_id: int, now: datetime
    ) -> AnalyticsWindow:
        """Return the campaign's whole life: from its first enrollment or creation to now."""
        ...

    def digest_facts(
        self,
        org_id: int,
        window: AnalyticsWindow,
        *,
        campaign_id: int | None = None,
        rep_user_id: int | None = None,
        time_zone: str,
        now: datetime,
    ) -> DigestFacts:
        """Return what the digest of the window shows (filtered by a campaign, a rep)."""
        ...

    def campaign_org_ids(self) -> builtins.list[int]:
        """Return the organizations that have campaigns."""
        ...

    def refresh_campaign_metrics(self, org_id: int, now: datetime) -> int:
        """Write each campaign's lifetime totals into its `metrics`; return how many."""
        ...


class AnalyticsUnitOfWork(Transaction, Protocol):
    """One transaction over the analytics read model (which writes campaigns' metrics)."""

    @property
    def analytics(self) -> AnalyticsReader: ...


# --- outbox ---


class OutboxRepository(Protocol):
    """The outbox rows (`email_sends`) and the send slots of their mailboxes.

    Rows are claimed and finished by compare-and-set: a method that returns a bool says
    whether the row still was as expected (a `worker` argument: still claimed by it).
    """

    def add(
        self,
        org_id: int,
        *,
        card_id: int | None,
        message_id: str,
        not_before: datetime,
        **content: object,
    ) -> OutboxEmail | None:
        """Store a queued email; None if the card already has one (cards send once)."""
        ...

    def add_many(self, org_id: int, rows: Sequence[dict[str, Any]]) -> int:
        """Store queued emails in bulk (no card; each row: message_id, not_before and
        content); a newsletter issue's row already stored for the contact is skipped.
        Return how many were stored."""
        ...

    def get(self, send_id: int) -> OutboxEmail:
        """Return an outbox row or raise NotFound."""
        ...

    def by_card(self, card_id: int) -> OutboxEmail | None:
        """Return the outbox row of a card, if it was ever asked to send."""
        ...

    def rearm_failed(self, send_id: int, *, not_before: datetime, **content: object) -> bool:
        """Queue a failed row again with new content (a card retried after a failure)."""
        ...

    def thread_message_ids(self, org_id: int, thread_id: str, *, limit: int = 20) -> list[str]:
        """Return the Message-IDs of a thread's messages we know of, oldest first."""
        ...

    def last_sent_thread(self, enrollment_id: int) -> str | None:
        """Return the Gmail thread of an enrollment's last sent email."""
        ...

    def recipient_block(
        self,
        org_id: int,
        to_email: str,
        *,
        card_id: int | None = None,
        email_type: EmailType | None = None,
    ) -> str | None:
        """Say why an address may not be emailed (opted out, bounced, turned `email_type`
        off in their preferences), or None if it may.

        An opted-out address may still get one email: the confirmation of its opt-out (the
        answer of card `card_id` when that card confirms it, a fixed text)."""
        ...

    def contact_id_for(self, org_id: int, to_email: str) -> int | None:
        """Return the contact with this address in the organization."""
        ...

    def sender_label(self, org_id: int, user_id: int | None) -> str:
        """Return how the sending user is named: their name, else their email."""
        ...

    def lock_queued(self, send_id: int) -> OutboxEmail | None:
        """Lock a queued row for claiming; None if it is not queued or another worker has it."""
        ...

    def due_queued(self, *, now: datetime, limit: int) -> list[OutboxEmail]:
        """Lock queued rows whose time has come, oldest due first."""
        ...

    def expired_leases(self, *, now: datetime, limit: int) -> list[OutboxEmail]:
        """Lock `sending` rows whose lease ran out (a crashed or unconfirmed attempt)."""
        ...

    def lock_mailbox(self, account_id: int, *, wait: bool) -> MailboxSlot | None:
        """Lock a mailbox's throttle row; without `wait`, None if another worker holds it."""
        ...

    def hold_mailbox(self, account_id: int, *, until: datetime) -> None:
        """Mark a send from the mailbox in flight until `until` (call with the row locked)."""
        ...

    def release_mailbox(self, account_id: int, *, held_until: datetime) -> bool:
        """End this send's hold of the mailbox; False if the hold had expired and moved on."""
        ...

    def push_next_send(self, account_id: int, at: datetime) -> None:
        """Make the mailbox's next send wait until `at` (never brings it earlier)."""
        ...

    def sends_since(self, account_id: int, since: datetime) -> int:
        """Count a mailbox's sends (made or in flight) since a moment."""
        ...

    def send_time_since(self, account_id: int, since: datetime, *, offset: int) -> datetime | None:
        """Return the time of the `offset`-th send (0 = oldest) of a mailbox since a moment."""
        ...

    def claim(
        self,
        send_id: int,
        *,
        worker: str,
        slot_at: datetime,
        lease_until: datetime,
        from_email: str,
    ) -> bool:
        """Take a queued row (or re-take one this worker holds) for an attempt now."""
        ...

    def extend_lease(self, send_id: int, *, worker: str, until: datetime) -> bool:
        """Renew this worker's lease of a row (reconciling it)."""
        ...

    def release_slot(self, send_id: int, *, worker: str) -> bool:
        """Give back the send slot of an attempt Gmail refused to carry out (rate limited)."""
        ...

    def forget_thread(self, send_id: int) -> None:
        """Send without a Gmail thread (the thread was deleted from the mailbox)."""
        ...

    def mark_sent(
        self,
        send_id: int,
        *,
        worker: str,
        gmail_message_id: str,
        gmail_thread_id: str,
        at: datetime,
    ) -> bool:
        """Record that Gmail accepted the message; False if the claim was lost meanwhile."""
        ...

    def requeue(
        self,
        send_id: int,
        *,
        not_before: datetime,
        reason: str,
        worker: str | None = None,
        keep_slot: bool = False,
    ) -> bool:
        """Put a row back in the queue: certainly not sent, to be tried at `not_before`."""
        ...

    def hold(self, send_id: int, *, worker: str, until: datetime, reason: str) -> bool:
        """Keep an unconfirmed attempt `sending` until `until`, when the mailbox is searched."""
        ...

    def mark_failed(self, send_id: int, *, reason: str, worker: str | None = None) -> bool:
        """Record that the email was certainly not sent and will not be retried by itself."""
        ...

    def next_due_at(self) -> datetime | None:
        """Return when the outbox next has work: a queued row's time or a lease's end."""
        ...

    def replace_body_html(self, send_id: int, body_html: str) -> None:
        """Store the HTML a queued row is sent with (its tracked HTML, made once its id is
        known)."""
        ...


class OutboxUnitOfWork(Transaction, Protocol):
    """One transaction over the outbox, the mailboxes and the engagement history (an
    accepted send is recorded there); commits once."""

    @property
    def analytics_settings(self) -> AnalyticsSettingsRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def gmail_accounts(self) -> GmailAccountRepository: ...

    @property
    def engagement(self) -> EngagementRepository: ...


class MailboxConnection(Protocol):
    """One mailbox's mail API, for one unit of work (not shared between threads)."""

    def send(self, message: MailMessage, *, thread_id: str | None) -> MessageRef:
        """Send a message, never retried inside: a retried send could go out twice.

        Raise InvalidInput when the message cannot be composed (nothing was sent) and
        MailboxError when the call failed (its kind says whether it may have gone out).
        """
        ...

    def find_by_message_id(self, message_id: str) -> MessageRef | None:
        """Search the mailbox, Trash and Spam included, for our Message-ID; raise MailboxError."""
        ...

    def token_update(self) -> AccessTokenUpdate | None:
        """Return the access token refreshed during the calls, if it was, to be stored."""
        ...


class MailSender(Protocol):
    """Sends email from reps' own mailboxes (the Gmail API in production)."""

    def new_message_id(self) -> str:
        """Return a new, unique Message-ID of ours (`<...@our-domain>`)."""
        ...

    def check(self, message: MailMessage) -> None:
        """Raise InvalidInput if the message could not be composed; send nothing."""
        ...

    def connect(self, tokens: AccountTokens) -> MailboxConnection:
        """Open a mailbox with its stored tokens (no call is made yet)."""
        ...


# --- understanding (the inbound pipeline after `parsed`) ---


class InboundPipelineRepository(Protocol):
    """The queue of parsed inbound messages and what the pipeline records on them."""

    def park_exhausted(self, *, max_attempts: int, now: datetime) -> int:
        """Park (status failed) due rows whose process died under them `max_attempts` times."""
        ...

    def claim(
        self,
        *,
        limit: int,
        now: datetime,
        lease_until: datetime,
        max_attempts: int,
        org_id: int | None = None,
    ) -> builtins.list[InboundMessage]:
        """Claim due parsed rows under a lease, fairly across organizations (only
        `org_id`'s when given)."""
        ...

    def claim_reclassifications(
        self, *, limit: int, now: datetime, lease_until: datetime
    ) -> builtins.list[InboundMessage]:
        """Claim processed rows classified offline whose re-classification is due."""
        ...

    def hold(
        self, email_ids: Sequence[int], *, lease_until: datetime, reclassifying: bool
    ) -> dict[int, builtins.list[dict[str, Any]]]:
        """Lock the claimed rows this claim still holds; return each one's actions so far.

        A row missing from the answer was taken by another worker (its lease ran out).
        """
        ...

    def record(
        self,
        email_id: int,
        recorded: Recorded,
        *,
        earlier_actions: Sequence[dict[str, Any]],
        now: datetime,
    ) -> None:
        """Write the classification, links and actions, and finish the row as processed
        (at the latest when `flush()` is called; reads of this repository flush first)."""
        ...

    def flush(self) -> None:
        """Write what `record` buffered."""
        ...

    def fail(
        self,
        email_id: int,
        *,
        error: str,
        lease_until: datetime,
        parked: bool,
        next_attempt_at: datetime,
        reclassifying: bool,
    ) -> bool:
        """Keep a failure on the row: retried at `next_attempt_at`, or parked; True if parked."""
        ...

    def count_soft_bounces(
        self, org_id: int, contact_id: int, *, since: datetime, excluding: int
    ) -> int:
        """Count the contact's processed soft bounces received since a time."""
        ...

    def requeue(
        self, *, since: datetime, org_id: int | None, status: str | None, now: datetime
    ) -> RequeueCounts:
        """Put rows received since a time back in the queue (parsed, due now)."""
        ...

    def list(
        self, org_id: int, filters: InboundFilter, *, limit: int, offset: int
    ) -> builtins.list[InboundEmailSummary]:
        """Return inbound emails, newest first."""
        ...

    def get(self, org_id: int, email_id: int) -> InboundEmailDetail:
        """Return one inbound email with what the pipeline did, or raise NotFound."""
        ...


class ConversationRepository(Protocol):
    """Our sends, contacts and clients an inbound message may link to; conversations."""

    def prefetch(self, org_id: int, keys: LinkKeys) -> None:
        """Fetch every send, contact and client these keys may find, in a few queries;
        the lookups below then answer from memory for these keys (this unit of work)."""
        ...

    def send_by_message_ids(self, org_id: int, message_ids: Sequence[str]) -> SendRef | None:
        """Return the most recent send whose Message-ID is one of these."""
        ...

    def send_by_thread(self, org_id: int, thread_id: str) -> SendRef | None:
        """Return the most recent send in a Gmail thread."""
        ...

    def latest_send_to(self, org_id: int, address: str, *, since: datetime) -> SendRef | None:
        """Return our most recent send to an address since a time."""
        ...

    def contact(self, org_id: int, contact_id: int) -> ContactRef | None:
        """Return a contact with its client."""
        ...

    def contact_by_address(self, org_id: int, address: str) -> ContactRef | None:
        """Return the contact with this address (case-insensitive)."""
        ...

    def client_by_domains(self, org_id: int, domains: Sequence[str]) -> int | None:
        """Return the client whose domain is the first of these that one has."""
        ...

    def attach(
        self,
        org_id: int,
        email_id: int,
        *,
        send: SendRef,
        thread_id: str | None,
        at: datetime,
        sentiment: str | None,
        is_reply: bool,
        counted: bool,
    ) -> int | None:
        """Put a message in its send's conversation (one per thread); return its id.

        `counted`: the message was in a conversation already (a re-run); not counted again.
        """
        ...

    def mark_replied(
        self, org_id: int, send_id: int, *, email_id: int, at: datetime, sentiment: str
    ) -> None:
        """Mark a send replied by a message (the first reply; its sentiment follows it);
        written at the latest by `flush()`."""
        ...

    def flush(self) -> None:
        """Write what `mark_replied` buffered."""
        ...

    def timeline(self, org_id: int, conversation_id: int) -> builtins.list[ConversationEntry]:
        """Return a conversation's sends and replies in the order they happened."""
        ...


class InboundActionRepository(Protocol):
    """What acting on an inbound message changes besides an opt-out."""

    def prefetch(self, org_id: int, contact_ids: Sequence[int]) -> None:
        """Read these contacts' running enrollments in one query (kept up to date by the
        changes below, for this unit of work)."""
        ...

    def enrollments(self, org_id: int, contact_id: int) -> builtins.list[EnrollmentRef]:
        """Return the contact's running (active or paused) enrollments."""
        ...

    def stop_enrollments(
        self, org_id: int, ids: Sequence[int], *, reason: str, email_id: int, at: datetime
    ) -> builtins.list[int]:
        """Stop running enrollments; return the ids this call stopped."""
        ...

    def pause_enrollments(
        self,
        org_id: int,
        ids: Sequence[int],
        *,
        until: datetime | None,
        reason: str,
        email_id: int,
        at: datetime,
    ) -> builtins.list[int]:
        """Pause active enrollments (until a time, or until a person resumes them)."""
        ...

    def set_stop_email(self, org_id: int, ids: Sequence[int], *, email_id: int) -> None:
        """Name the message that stopped these enrollments (an opt-out's)."""
        ...

    def mark_bounced(self, org_id: int, contact_id: int, *, at: datetime) -> bool:
        """Mark the contact's address bounced; True if this call changed it."""
        ...


class ReplyActionRepository(Protocol):
    """What acting on a reply's intent reads and changes (domain/reply_actions.py): the
    person a referral names, a contact's pause, where a contact lives."""

    def find_contact(self, org_id: int, email: str) -> KnownPerson | None:
        """Return the organization's contact with this address (any case), or None."""
        ...

    def add_contact(
        self,
        org_id: int,
        *,
        email: str,
        first_name: str | None,
        last_name: str | None,
        title: str | None,
        client_id: int | None,
        tags: Sequence[str],
        at: datetime,
    ) -> KnownPerson:
        """Add a contact, or return the one that has this address already."""
        ...

    def pause_contact(
        self, org_id: int, contact_id: int, *, until: datetime, reason: str, at: datetime
    ) -> bool:
        """Pause the person until a time (no outreach before it); True if it changed."""
        ...

    def contact_zone(self, org_id: int, contact_id: int) -> tuple[str | None, str | None]:
        """Return the contact's stored time zone and US state (either may be None)."""
        ...

    def campaign_name(self, org_id: int, campaign_id: int) -> str | None:
        """Return a campaign's name, or None when there is no such campaign."""
        ...

    def client_name(self, org_id: int, client_id: int) -> str | None:
        """Return a client's name, or None when there is no such client."""
        ...


class IntentReader(Protocol):
    """Reads what a reply's intent carries out of its text (integrations/reply_intents.py)."""

    def referrals(
        self, text: str, *, sender: str | None, own_addresses: Sequence[str]
    ) -> list[ReferralCandidate]:
        """The people a referral or wrong-person reply points to, best first."""
        ...

    def meeting_times(self, text: str, *, sent_at: datetime, tz: str | None) -> list[ProposedTime]:
        """The times a meeting request proposes, in the order written."""
        ...

    def resume_date(self, text: str, *, sent_at: datetime, tz: str | None) -> ResumeDate | None:
        """The first business day a "not now" says to come back, or None."""
        ...


class InboundCardRepository(Protocol):
    """The cards the inbound pipeline makes of replies (one per inbound message)."""

    def add_many(self, org_id: int, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert cards; return their ids in the order given."""
        ...

    def for_inbound_email(self, org_id: int, inbound_email_id: int) -> int | None:
        """Return the id of the card an inbound message made, or None."""
        ...


class InboundTaskRepository(Protocol):
    """The job tasks the inbound pipeline queues (posting a reply card)."""

    def add_many(self, org_id: int, job_id: int, rows: Sequence[dict[str, Any]]) -> int:
        """Queue tasks of the job."""
        ...


class InboxJobRepository(Protocol):
    """The organization's replies inbox job, as the inbound pipeline needs it."""

    def inbox_job_id(self, org_id: int, *, now: datetime) -> int:
        """Return the id of the replies inbox job, creating it on first use."""
        ...


class ReplyRoutingRepository(Protocol):
    """What the thread of an inbound message says about who answers it."""

    def routing_facts(
        self,
        org_id: int,
        inbound_email_id: int,
        *,
        send_id: int | None,
        client_id: int | None,
        now: datetime,
    ) -> RoutingFacts:
        """Return the mailbox's user, the answered send's job owner, campaign and step, and
        the client with its order history (each None when unknown)."""
        ...

    def order_known(
        self,
        org_id: int,
        order_numbers: Sequence[str],
        *,
        client_id: int | None,
        contact_id: int | None,
    ) -> bool:
        """For a status request: with order numbers, whether the organization has an order
        with one of them (any client's); without, whether the client (else the contact) has
        an order still open."""
        ...


class UnderstandingUnitOfWork(Transaction, Protocol):
    """One transaction over what the inbound pipeline reads and writes; commits once."""

    @property
    def cards(self) -> InboundCardRepository: ...

    @property
    def jobs(self) -> InboxJobRepository: ...

    @property
    def reply_routing(self) -> ReplyRoutingRepository: ...

    @property
    def reply_actions(self) -> ReplyActionRepository: ...

    @property
    def tasks(self) -> InboundTaskRepository: ...

    @property
    def reply_policies(self) -> ReplyPolicyRepository: ...

    @property
    def inbound_pipeline(self) -> InboundPipelineRepository: ...

    @property
    def conversations(self) -> ConversationRepository: ...

    @property
    def inbound_actions(self) -> InboundActionRepository: ...

    @property
    def opt_outs(self) -> OptOutRepository: ...

    @property
    def engagement(self) -> EngagementRepository: ...

    @property
    def corrections(self) -> CorrectionRepository: ...


# --- rules ---


class CompiledPattern(Protocol):
    """A regular expression ready to search subjects."""

    def search(self, text: str) -> bool:
        """Tell whether the pattern occurs anywhere in the text."""
        ...

    @property
    def program_size(self) -> int:
        """The size of the compiled program, the engine's measure of a search's cost."""
        ...


class RegexEngine(Protocol):
    """Compiles the regular expressions of user rules (RE2 in production: linear time)."""

    def compile(self, pattern: str) -> CompiledPattern:
        """Compile a pattern; raise InvalidInput with the engine's reason when it refuses it."""
        ...


class ClassifierRuleRepository(Protocol):
    """The classification rules of one organization."""

    def list(self, org_id: int) -> builtins.list[Rule]:
        """Return every rule, by priority then id."""
        ...

    def list_active(self, org_id: int) -> builtins.list[Rule]:
        """Return the active rules, by priority then id."""
        ...

    def get(self, org_id: int, rule_id: int) -> Rule:
        """Return a rule or raise NotFound."""
        ...

    def find(self, org_id: int, *, rule_type: RuleType, pattern: str) -> Rule | None:
        """Return the rule with this type and (stored) pattern, if any."""
        ...

    def count(self, org_id: int, *, rule_type: RuleType | None = None) -> int:
        """Count the organization's rules (of one type, if given), active or not."""
        ...

    def add(
        self,
        org_id: int,
        *,
        rule_type: RuleType,
        pattern: str,
        category: Category,
        priority: int,
        is_active: bool,
        created_by: int | None,
        now: datetime,
    ) -> Rule:
        """Store a new rule."""
        ...

    def update(
        self,
        org_id: int,
        rule_id: int,
        *,
        category: Category | None,
        priority: int | None,
        is_active: bool | None,
    ) -> Rule:
        """Change the given fields of a rule (None keeps one); raise NotFound."""
        ...

    def delete(self, org_id: int, rule_id: int) -> None:
        """Delete a rule or raise NotFound."""
        ...


class RulesUnitOfWork(Transaction, Protocol):
    """One transaction over the classification rules; commits once."""

    @property
    def classifier_rules(self) -> ClassifierRuleRepository: ...


# --- corrections (learning from reps) ---


class CorrectionRepository(Protocol):
    """Reps' re-labels of inbound messages, and what a re-label reads and writes."""

    def message(self, org_id: int, inbound_email_id: int) -> RelabelTarget:
        """Return the message as a re-label reads it, or raise NotFound."""
        ...

    def card_message(self, org_id: int, card_id: int) -> int | None:
        """Return the inbound message a card was made from (None: not made from one), or
        raise NotFound when there is no such card."""
        ...

    def set_labels(
        self,
        org_id: int,
        inbound_email_id: int,
        labels: LabelSet,
        *,
        decided_detail: str,
        reason: str,
        now: datetime,
    ) -> None:
        """Write a rep's labels as the message's classification (decided by a rep, sure, no
        re-classification pending)."""
        ...

    def append_action(
        self,
        org_id: int,
        inbound_email_id: int,
        *,
        action: str,
        reason: str,
        contact_id: int | None,
        enrollment_ids: Sequence[int],
        at: datetime,
    ) -> None:
        """Append an entry to the message's `actions`."""
        ...

    def set_reply_sentiment(self, org_id: int, inbound_email_id: int, sentiment: Sentiment) -> bool:
        """Give the send this message replied to, and its conversation when this is the
        latest reply there, the new sentiment; True if anything changed."""
        ...

    def add(self, correction: NewCorrection) -> int:
        """Store a correction; return its id."""
        ...

    def list(self, org_id: int, *, limit: int, offset: int) -> builtins.list[CorrectionView]:
        """Return the organization's corrections, newest first."""
        ...

    def examples(self, org_id: int, *, limit: int) -> builtins.list[CorrectionExample]:
        """Return the latest corrections (one per message) as classifier examples."""
        ...

    def examples_for(
        self, org_ids: Sequence[int], *, limit: int
    ) -> dict[int, builtins.list[CorrectionExample]]:
        """Return `examples` for several organizations at once (those without any left out)."""
        ...

    def count_same(
        self,
        org_id: int,
        category: Category,
        *,
        sender_email: str | None = None,
        sender_domain: str | None = None,
    ) -> SameCorrections:
        """Count the messages of a sender (or domain) re-labelled to `category` from another
        category, and their distinct senders."""
        ...


class RuleProposalRepository(Protocol):
    """Rules proposed from reps' identical corrections."""

    def upsert(
        self,
        org_id: int,
        *,
        rule_type: RuleType,
        pattern: str,
        category: Category,
        corrections: int,
        now: datetime,
    ) -> tuple[RuleProposalView, bool]:
        """Open a proposal, or update the count of the one there (whatever its status);
        return it and True when this call opened it."""
        ...

    def get(self, org_id: int, proposal_id: int) -> RuleProposalView:
        """Return a proposal or raise NotFound."""
        ...

    def list(
        self, org_id: int, *, status: ProposalStatus | None, limit: int
    ) -> builtins.list[RuleProposalView]:
        """Return proposals, newest first."""
        ...

    def decide(
        self, org_id: int, proposal_id: int, *, to: ProposalStatus, by: int | None, now: datetime
    ) -> bool:
        """Move an open proposal to accepted or dismissed (compare-and-set); True if moved."""
        ...

    def set_rule(self, org_id: int, proposal_id: int, *, rule_id: int) -> None:
        """Name the rule an accepted proposal made."""
        ...

    def set_message(self, org_id: int, proposal_id: int, *, channel: str, ts: str) -> None:
        """Remember the chat message that shows the proposal (the first one posted)."""
        ...


class ChatNoticeRepository(Protocol):
    """Notices for the chat, queued in the caller's unit of work and sent after its commit."""

    def queue(self, org_id: int, kind: str, data: Mapping[str, Any], *, now: datetime) -> bool:
        """Queue a notice; False when the organization has no chat workspace to send it to."""
        ...


class CorrectionsUnitOfWork(Transaction, Protocol):
    """One transaction over what a re-label and a rule proposal touch; commits once."""

    @property
    def corrections(self) -> CorrectionRepository: ...

    @property
    def rule_proposals(self) -> RuleProposalRepository: ...

    @property
    def chat_notices(self) -> ChatNoticeRepository: ...

    @property
    def classifier_rules(self) -> ClassifierRuleRepository: ...

    @property
    def cards(self) -> CardRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def opt_outs(self) -> OptOutRepository: ...

    @property
    def engagement(self) -> EngagementRepository: ...

    @property
    def inbound_actions(self) -> InboundActionRepository: ...


# --- reply policy ---


class ReplyPolicyRepository(Protocol):
    """The auto-reply policy of each organization (one per organization, or none stored)."""

    def get(self, org_id: int) -> ReplyPolicy:
        """Return the organization's policy, or the defaults when none is stored."""
        ...

    def save(
        self, org_id: int, policy: ReplyPolicy, *, by: int | None, now: datetime
    ) -> ReplyPolicy:
        """Store the organization's policy in place of any before it; return it as stored."""
        ...


class ReplyPolicyUnitOfWork(Transaction, Protocol):
    """One transaction over the auto-reply policies; commits once."""

    @property
    def reply_policies(self) -> ReplyPolicyRepository: ...


# --- triage channel ---


class TriageChannelRepository(Protocol):
    """Each organization's triage channel (`organizations.triage_channel_id`)."""

    def triage_channel(self, org_id: int) -> str | None:
        """Return the organization's triage channel id, if one is set."""
        ...

    def set_triage_channel(self, org_id: int, channel_id: str | None) -> None:
        """Store the triage channel (None: none); raise NotFound for an unknown org."""
        ...


class UnpostedCardRepository(Protocol):
    """The reply cards that wait with no chat message (nowhere took them)."""

    def unposted_reply_cards(self, org_id: int, *, limit: int) -> builtins.list[tuple[int, int]]:
        """Return (card id, job id) of reply cards waiting for a person with no message."""
        ...


class TriageUnitOfWork(Transaction, Protocol):
    """One transaction over the triage channel; commits once."""

    @property
    def orgs(self) -> TriageChannelRepository: ...

    @property
    def cards(self) -> UnpostedCardRepository: ...

    @property
    def tasks(self) -> InboundTaskRepository: ...


class ChannelDirectory(Protocol):
    """Tells whether Salesbot can post in a chat channel (Slack in production)."""

    def channel_status(self, org_id: int, channel_id: str) -> ChannelStatus:
        """Return what the chat says of the channel (found: False when the bot cannot see
        it); raise ExternalServiceError when the chat cannot be asked."""
        ...


# --- classification ---


class MessageClassifier(Protocol):
    """Reads an inbound message: category, sentiment, intent, entities (Claude or offline).

    Neither implementation applies the organization's confidence threshold: the pipeline
    calls `domain.classification.escalate_if_unsure` with it. A result with
    `injection_attempt` set must never be acted on automatically (no opt-out, no reply):
    a person reviews it, whatever its confidence.
    """

    @property
    def name(self) -> str:
        """Who decides, for the record: "claude:<model>" or "offline:<version>"."""
        ...

    def classify(self, request: ClassifyRequest) -> Classification:
        """Classify one message.

        Raise ExternalServiceError when the service cannot be reached or keeps failing
        (never for a bad answer: that is an ESCALATE with the reason).
        """
        ...

    def classify_many(
        self, requests: Sequence[ClassifyRequest]
    ) -> list[Classification | ExternalServiceError]:
        """Classify several messages with bounded concurrency; one result per request, in
        order, with the ExternalServiceError in place of a message that failed."""
        ...


# --- replies ---


class ReplyContextRepository(Protocol):
    """The read model of an inbound message's business context (answers to replies)."""

    def reply_context(self, org_id: int, inbound_email_id: int, *, now: datetime) -> ReplyContext:
        """Return what an answer to the message may use; raise NotFound outside the org.

        Bounded: a few queries of at most a few dozen rows each, whatever the history.
        """
        ...


class RepliesUnitOfWork(Transaction, Protocol):
    """One (read-only) transaction over the reply context read model."""

    @property
    def reply_contexts(self) -> ReplyContextRepository: ...


class ReplyDrafter(Protocol):
    """Drafts an answer to an inbound message from its context (Claude, or the templates)."""

    @property
    def name(self) -> str:
        """Who drafts, for the record: "claude:<model>" or "template"."""
        ...

    def draft(self, context: ReplyContext) -> ReplyDraft:
        """Return a draft; raise ExternalServiceError (the service) or InvalidInput (its
        answer) when it cannot, so the caller falls back to the template."""
        ...


class ReplyLookout(Protocol):
    """A last look in the rep's mailbox before a cadence follow-up (domain/last_look.py):
    Gmail in production; absent in sandbox mode, where no follow-up is looked before."""

    def look(
        self,
        org_id: int,
        *,
        sender_user_id: int | None,
        contact_email: str,
        thread_id: str | None,
        since: datetime | None,
    ) -> LookResult:
        """Read the contact's thread and their mail since `since` in the sender's mailbox;
        store what Salesbot has not stored yet for the inbound pipeline; return the counts.

        Raise ExternalServiceError when the mailbox cannot be read (the caller lets the
        step run rather than hold it on a look that did not happen).
        """
        ...


# --- analytics settings and tracking (issue 14) ---


class AnalyticsSettingsRepository(Protocol):
    """An organization's `analytics_settings` (tracking, lead scoring, targeting)."""

    def get(self, org_id: int) -> AnalyticsSettings:
        """Return the organization's settings (the defaults where it set none)."""
        ...

    def save(self, org_id: int, settings: AnalyticsSettings) -> None:
        """Replace the sections the model knows; a stored section it does not know stays."""
        ...


class AnalyticsSettingsUnitOfWork(Transaction, Protocol):
    """One transaction over an organization's analytics settings."""

    @property
    def analytics_settings(self) -> AnalyticsSettingsRepository: ...


class TrackingRepository(Protocol):
    """The opens and clicks of tracked sends (`email_tracking_events`)."""

    def tracked_send(self, org_id: int, send_id: int) -> TrackedSend | None:
        """Return an organization's tracked send; None if it is not one (or not its)."""
        ...

    def record_hit(self, hit: TrackingHit) -> None:
        """Count a fetch: a new (send, kind, link, by_bot) row, or one more hit of it."""
        ...


class TrackingUnitOfWork(Transaction, Protocol):
    """One transaction counting a fetch of a tracked pixel or link."""

    @property
    def tracking(self) -> TrackingRepository: ...


class EmailTracker(Protocol):
    """Adds the pixel and the redirecting links to a tracked email's HTML."""

    def track(
        self,
        html: str,
        *,
        org_id: int,
        send_id: int,
        plan: TrackingPlan,
        expires_at: datetime,
    ) -> str:
        """Return the HTML with the pixel (opens) and its http(s) links through the
        redirect (clicks); mailto:, our own links (unsubscribe) and others stay. The same
        input gives the same output, and tracked HTML is returned unchanged."""
        ...


# --- the engagement digest (issue 14) ---


class DigestRepository(Protocol):
    """Digest subscriptions and their posts (`digest_subscriptions`, `digest_posts`)."""

    def save_subscription(
        self, new: NewSubscription, *, now: datetime
    ) -> tuple[DigestSubscriptionView, bool]:
        """Store a subscription, or update the one of its channel, frequency and scope;
        return it and whether it is new."""
        ...

    def subscriptions(self, org_id: int) -> builtins.list[DigestSubscriptionView]:
        """Return the organization's subscriptions, by channel, frequency and scope."""
        ...

    def remove_subscriptions(
        self,
        org_id: int,
        *,
        channel_id: str,
        frequency: DigestFrequency | None,
        scope_key: str | None,
    ) -> builtins.list[DigestSubscriptionView]:
        """Delete a channel's subscriptions (of one frequency and scope when given);
        return those deleted."""
        ...

    def org_time_zone(self, org_id: int) -> str | None:
        """Return the time zone of the organization's cadence settings, if it set one."""
        ...

    def lock_due(self, *, now: datetime, limit: int) -> builtins.list[DigestSubscriptionView]:
        """Lock subscriptions whose next run has come, earliest first (SKIP LOCKED)."""
        ...

    def add_post(self, new: NewDigestPost, *, now: datetime) -> int | None:
        """Store a pending post; None when its subscription already has this period."""
        ...

    def move_next_run(
        self, subscription_id: int, *, expected: datetime, to: datetime, now: datetime
    ) -> bool:
        """Move a subscription's next run from `expected` to `to` (compare-and-set)."""
        ...

    def claim_posts(
        self, *, now: datetime, limit: int, lease_until: datetime, worker: str
    ) -> builtins.list[DigestPostView]:
        """Lease pending posts that are due and `posting` ones whose lease ran out, oldest
        first (SKIP LOCKED); each claim counts an attempt."""
        ...

    def set_file(self, post_id: int, *, worker: str, file_id: str) -> bool:
        """Record the uploaded chart of a post this worker holds."""
        ...

    def mark_posted(
        self, post_id: int, *, worker: str, ts: str, figures: dict[str, Any], at: datetime
    ) -> bool:
        """Record the message of a post this worker holds; its subscription's error clears."""
        ...

    def mark_failed(
        self, post_id: int, *, worker: str, error: str, retry_at: datetime | None, at: datetime
    ) -> bool:
        """Put a post this worker holds back to pending until `retry_at`, or (None) fail it
        for good and show the error on its subscription."""
        ...

    def get_post(self, post_id: int) -> DigestPostView:
        """Return a post or raise NotFound."""
        ...


class DigestsUnitOfWork(Transaction, Protocol):
    """One transaction over digest subscriptions and what they filter on."""

    @property
    def digests(self) -> DigestRepository: ...

    @property
    def campaigns(self) -> CampaignRepository: ...

    @property
    def users(self) -> UserRepository: ...


class DigestFactsSource(Protocol):
    """The digest's read model (storage/analytics.py)."""

    def digest_facts(
        self,
        org_id: int,
        window: AnalyticsWindow,
        *,
        campaign_id: int | None = None,
        rep_user_id: int | None = None,
        time_zone: str,
        now: datetime,
    ) -> DigestFacts:
        """Return everything the digest of a period shows."""
        ...


class DigestPostingUnitOfWork(Transaction, Protocol):
    """One transaction over digest posts and the numbers they show."""

    @property
    def digests(self) -> DigestRepository: ...

    @property
    def analytics(self) -> DigestFactsSource: ...
