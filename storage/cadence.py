"""The cadence tick's rows: claiming due enrollments, the facts its rules read, verdicts.

Cost follows the due work, not the table: the claim walks the partial index
`ix_enrollments_due` (active rows with a due time) in due order and stops at `limit`; the
facts are a few grouped queries over the claimed contacts (index ranges on email_sends
and appraisal_orders); the verdicts are one executemany UPDATE.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    any_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from domain.cadence import (
    BOUNCED,
    JOB_PAUSED,
    OPTED_OUT,
    CadenceSettings,
    ContactFacts,
    DueEnrollment,
    GuardCounts,
    Settlement,
    settings_from,
)
from domain.email_preferences import EmailPreferences
from domain.jobs import EnrollmentStatus
from storage import models as m
from storage.sql import rowcount

_EN = cast(Table, m.Enrollment.__table__)
_ACTIVE: Final = EnrollmentStatus.ACTIVE.value
_PAUSED: Final = EnrollmentStatus.PAUSED.value
_RUNNING: Final = (_ACTIVE, _PAUSED)
# The sends fatigue counts: sent, or on their way (queued, being sent).
_ON_THEIR_WAY: Final = ("queued", "sending")
# Written out, so that the planner matches the partial index `ix_email_sends_on_their_way`
# (migration 0015) whatever the plan: a bound parameter would not prove its predicate.
_ON_THEIR_WAY_SQL: Final = m.EmailSend.status.in_([literal_column(f"'{s}'") for s in _ON_THEIR_WAY])

# Email cards drafted and not sent yet: they count toward the fatigue limits.
_WAITING_CARD_STATES: Final = ("suggested", "in_review", "approved", "executing")
_EMAIL_CARD_TYPES: Final = ("send_email", "follow_up")

_SETTLE: Final = (
    update(_EN)
    .where(_EN.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        next_due_at=bindparam("b_due"),
        stop_reason=bindparam("b_stop"),
        defer_reason=bindparam("b_defer"),
        time_zone=func.coalesce(bindparam("b_zone"), _EN.c.time_zone),
        step_started_at=bindparam("b_started"),
        updated_at=bindparam("b_at"),
    )
)


class CadenceRepo:
    """Due enrollments and what the cadence's rules need (nothing here commits)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _pg(self) -> bool:
        return self._s.get_bind().dialect.name == "postgresql"

    def _domain_of(self, email: Any) -> Any:
        """The lower-case domain of an email address column, in this dialect's SQL."""
        if self._pg():
            return func.split_part(func.lower(email), "@", 2)
        return func.lower(func.substr(email, func.instr(email, "@") + 1))

    def _among(self, column: Any, values: Sequence[int] | Sequence[str]) -> ColumnElement[bool]:
        """`column IN values`; on PostgreSQL `column = ANY(:array)`, one parameter: the
        statement's text stays the same whatever the number of values, so it is parsed and
        prepared once, not once per chunk (an IN of 500 values cost more to convert on the
        client than the query took on the server)."""
        if not self._pg():
            return cast(ColumnElement[bool], column.in_(values))
        array = bindparam(None, list(values), type_=ARRAY(column.type))
        return cast(ColumnElement[bool], column == any_(array))

    def claim_due(
        self, *, now: datetime, limit: int, org_id: int | None = None
    ) -> list[DueEnrollment]:
        """Lock up to `limit` active enrollments due by `now` (of one organization, given
        `org_id`), in due order (SKIP LOCKED)."""
        en = m.Enrollment
        query = (
            select(
                en.id,
                en.org_id,
                en.job_id,
                en.contact_id,
                en.step,
                en.created_at,
                en.last_step_at,
            )
            .where(en.status == _ACTIVE, en.next_due_at.is_not(None), en.next_due_at <= now)
            .order_by(en.next_due_at)
            .limit(limit)
        )
        if org_id is not None:
            query = query.where(en.org_id == org_id)
        if self._pg():
            query = query.with_for_update(skip_locked=True)
        return [
            DueEnrollment(
                id=r.id,
                org_id=r.org_id,
                job_id=r.job_id,
                contact_id=r.contact_id,
                step=r.step,
                enrolled_at=r.created_at,
                last_step_at=r.last_step_at,
            )
            for r in self._s.execute(query)
        ]

    def resume_paused(self, *, now: datetime, limit: int, org_id: int | None = None) -> int:
        """Make enrollments whose pause ended active and due now (in pause-end order)."""
        en = m.Enrollment
        ids = select(en.id).where(
            en.status == _PAUSED, en.paused_until.is_not(None), en.paused_until <= now
        )
        if org_id is not None:
            ids = ids.where(en.org_id == org_id)
        ids = ids.order_by(en.paused_until).limit(limit)
        if self._pg():
            ids = ids.with_for_update(skip_locked=True)
        chosen = list(self._s.scalars(ids))
        if not chosen:
            return 0
        result = self._s.execute(
            update(en)
            .where(en.id.in_(chosen), en.status == _PAUSED)
            .values(
                status=_ACTIVE,
                paused_until=None,
                # A step still in flight (its card waits) is not run again: it ends with
                # its card, and the next step comes due then.
                next_due_at=case((en.step_started_at.is_(None), now), else_=None),
                defer_reason="resumed after the pause ended",
                updated_at=now,
            )
        )
        return rowcount(result)

    def contact_facts(
        self, org_id: int, contact_ids: Sequence[int], *, now: datetime
    ) -> dict[int, ContactFacts]:
        """Return what the stop rules and fatigue limits read of these contacts."""
        ids = sorted(set(contact_ids))
        if not ids:
            return {}
        c, o = m.Contact, m.AppraisalOrder
        # The latest order of each contact's client: one backward probe of
        # (org_id, client_id, ordered_at), not every order of the client.
        latest_order = (
            select(func.max(o.ordered_at))
            .where(o.org_id == org_id, o.client_id == c.client_id)
            .scalar_subquery()
        )
        rows = self._s.execute(
            select(
                latest_order.label("client_last_order_at"),
                c.id,
                c.email,
                c.opted_out_at,
                c.email_status,
                c.last_replied_at,
                c.paused_until,
                c.pause_reason,
                c.client_id,
                c.timezone,
                c.state,
                c.email_preferences,
            ).where(c.org_id == org_id, self._among(c.id, ids))
        ).all()
        emails = sorted({r.email.lower() for r in rows})
        domains = sorted({r.email.rsplit("@", 1)[-1].lower() for r in rows if "@" in r.email})
        s = m.EmailSend
        week_ago, day_ago = now - timedelta(days=7), now - timedelta(days=1)
        wanted = set(emails)
        per_email: Counter[str] = Counter()
        per_domain: Counter[str] = Counter()
        # Each count reads index ranges as small as what it counts, never the recipients'
        # whole history: the sends of the window ((org_id, to_email|to_domain, sent_at)),
        # and the emails still on their way (the partial index of the outbox's queue). One
        # query with an OR read every send ever made to each address and domain.
        for email, count in self._s.execute(
            select(func.lower(s.to_email), func.count())
            .where(s.org_id == org_id, self._among(s.to_email, emails), s.sent_at >= week_ago)
            .group_by(func.lower(s.to_email))
        ):
            per_email[email] += int(count)
        for domain, count in self._s.execute(
            select(s.to_domain, func.count())
            .where(s.org_id == org_id, self._among(s.to_domain, domains), s.sent_at >= day_ago)
            .group_by(s.to_domain)
        ):
            per_domain[str(domain)] += int(count)
        for email, domain, sent_at in self._s.execute(
            select(func.lower(s.to_email), s.to_domain, s.sent_at).where(
                s.org_id == org_id, _ON_THEIR_WAY_SQL, self._among(s.to_domain, domains)
            )
        ):
            # Every email to a wanted address goes to a wanted domain. A send whose slot is
            # inside a window was counted with that window's sends.
            if email in wanted and (sent_at is None or sent_at < week_ago):
                per_email[email] += 1
            if domain is not None and (sent_at is None or sent_at < day_ago):
                per_domain[str(domain)] += 1
        # Emails drafted and not sent yet (cards waiting for review or their send): the
        # tick that drafted them must not draft past the limits before they go out.
        k = m.Card
        waiting = (
            k.org_id == org_id,
            k.state.in_(_WAITING_CARD_STATES),
            k.type.in_(_EMAIL_CARD_TYPES),
        )
        by_id = {r.id: r.email.lower() for r in rows}
        for contact_id, count in self._s.execute(
            select(k.contact_id, func.count())
            .where(*waiting, self._among(k.contact_id, ids))
            .group_by(k.contact_id)
        ):
            per_email[by_id[contact_id]] += int(count)
        if domains:
            domain_of = self._domain_of(c.email)
            for domain, count in self._s.execute(
                select(domain_of, func.count())
                .select_from(k)
                .join(c, c.id == k.contact_id)
                .where(*waiting, k.created_at >= day_ago, domain_of.in_(domains))
                .group_by(domain_of)
            ):
                per_domain[str(domain)] += int(count)
        facts: dict[int, ContactFacts] = {}
        for r in rows:
            email = r.email.lower()
            facts[r.id] = ContactFacts(
                contact_id=r.id,
                email=r.email,
                opted_out=r.opted_out_at is not None,
                email_status=r.email_status,
                last_replied_at=r.last_replied_at,
                paused_until=r.paused_until,
                pause_reason=r.pause_reason,
                client_last_order_at=r.client_last_order_at,
                time_zone=r.timezone,
                state=r.state,
                emails_last_week=per_email.get(email, 0),
                domain_emails_last_day=per_domain.get(email.rsplit("@", 1)[-1], 0),
                email_preferences=EmailPreferences.from_stored(r.email_preferences),
            )
        return facts

    def settle(self, rows: Sequence[Settlement], *, now: datetime) -> None:
        """Write the tick's verdicts (one executemany statement)."""
        if not rows:
            return
        params: list[dict[str, Any]] = [
            {
                "b_id": r.id,
                "b_status": r.status,
                "b_due": r.next_due_at,
                "b_stop": r.stop_reason[:64] if r.stop_reason else None,
                "b_defer": r.defer_reason[:200] if r.defer_reason else None,
                "b_zone": r.time_zone[:100] if r.time_zone else None,
                "b_started": r.step_started_at,
                "b_at": now,
            }
            for r in rows
        ]
        self._s.connection().execute(_SETTLE, params)

    def step_done(
        self, enrollment_id: int, *, step: int, at: datetime, final: bool = False
    ) -> bool:
        """Record that step `step` ended: the next step counts from `at`; `final`: the
        cadence is complete (compare-and-set)."""
        en = m.Enrollment
        result = self._s.execute(
            update(en)
            .where(
                en.id == enrollment_id,
                en.step == step,
                en.status.in_(_RUNNING),
                en.step_started_at.is_not(None),
            )
            .values(
                step=step + 1,
                step_started_at=None,
                last_step_at=at,
                next_due_at=None if final else at,
                defer_reason=None,
                updated_at=at,
                **({"status": EnrollmentStatus.COMPLETED.value} if final else {}),
            )
        )
        return rowcount(result) > 0

    def defer(self, enrollment_id: int, *, step: int, until: datetime, reason: str) -> bool:
        """Put an enrollment whose step could not run back in the queue at `until`."""
        en = m.Enrollment
        result = self._s.execute(
            update(en)
            .where(en.id == enrollment_id, en.step == step, en.status == _ACTIVE)
            .values(next_due_at=until, defer_reason=reason[:200], step_started_at=None)
        )
        return rowcount(result) > 0

    def stop(self, enrollment_id: int, *, reason: str, at: datetime) -> bool:
        """Stop a running enrollment with the reason."""
        en = m.Enrollment
        result = self._s.execute(
            update(en)
            .where(en.id == enrollment_id, en.status.in_(_RUNNING))
            .values(
                status=EnrollmentStatus.STOPPED.value,
                stop_reason=reason[:64],
                next_due_at=None,
                updated_at=at,
            )
        )
        return rowcount(result) > 0

    def enrollment_state(self, enrollment_id: int) -> tuple[str, str | None] | None:
        """Return an enrollment's status and stop reason (None: it is gone)."""
        row = self._s.execute(
            select(m.Enrollment.status, m.Enrollment.stop_reason).where(
                m.Enrollment.id == enrollment_id
            )
        ).one_or_none()
        return (row.status, row.stop_reason) if row is not None else None

    def resume_job(self, org_id: int, job_id: int, *, now: datetime) -> int:
        """Make the enrollments the job's pause held active and due now; the guard counts
        the job's bounces and opt-outs from now on."""
        self._s.execute(
            update(m.Job).where(m.Job.org_id == org_id, m.Job.id == job_id).values(guard_since=now)
        )
        en = m.Enrollment
        result = self._s.execute(
            update(en)
            .where(
                en.org_id == org_id,
                en.job_id == job_id,
                en.status == _PAUSED,
                en.stop_reason == JOB_PAUSED,
            )
            .values(
                status=_ACTIVE,
                stop_reason=None,
                next_due_at=case((en.step_started_at.is_(None), now), else_=None),
                updated_at=now,
            )
        )
        return rowcount(result)

    def has_open(self, org_id: int, job_id: int) -> bool:
        """True while the job has steps to come: an enrollment due for the tick, paused
        until a date, or held by the job's own pause (index probes). An enrollment whose
        step waits on a card holds the job through the card (`has_undecided`); one whose
        card was blocked or that a person paused without an end does not."""
        en = m.Enrollment
        found = self._s.scalar(
            select(en.id)
            .where(
                en.job_id == job_id,
                en.org_id == org_id,
                or_(
                    and_(en.status == _ACTIVE, en.next_due_at.is_not(None)),
                    and_(
                        en.status == _PAUSED,
                        or_(en.paused_until.is_not(None), en.stop_reason == JOB_PAUSED),
                    ),
                ),
            )
            .limit(1)
        )
        return found is not None

    def guard_counts(self, org_id: int, job_id: int, *, since: datetime) -> GuardCounts:
        """A job's sends, hard bounces and opt-outs since `since`, or since the job was
        last resumed if that is later."""
        s, en = m.EmailSend, m.Enrollment
        resumed = self._s.scalar(
            select(m.Job.guard_since).where(m.Job.org_id == org_id, m.Job.id == job_id)
        )
        if resumed is not None and resumed > since:
            since = resumed
        sends = self._s.scalar(
            select(func.count())
            .select_from(s)
            # The job was read within its organization, and a send belongs to its job's:
            # with org_id here the planner ANDs the organization's whole (org_id, status)
            # index into the count (65 ms a job on 1M enrollments); without it the count
            # is a range of (job_id, sent_at).
            .where(s.job_id == job_id, s.sent_at >= since)
        )
        counts = dict(
            self._s.execute(
                select(en.stop_reason, func.count())
                .where(
                    en.job_id == job_id,
                    en.status == EnrollmentStatus.STOPPED.value,
                    en.stop_reason.in_([BOUNCED, OPTED_OUT]),
                    en.updated_at >= since,
                )
                .group_by(en.stop_reason)
            ).all()
        )
        return GuardCounts(
            sends=int(sends or 0),
            bounces=int(counts.get(BOUNCED, 0)),
            opt_outs=int(counts.get(OPTED_OUT, 0)),
        )

    def jobs_with_recent_losses(
        self, *, since: datetime, org_id: int | None = None
    ) -> list[tuple[int, int]]:
        """(org id, job id) of the jobs whose contacts bounced or opted out since `since`:
        a range of the partial index `ix_enrollments_losses` (such rows only)."""
        en = m.Enrollment
        query = (
            select(en.org_id, en.job_id)
            .where(
                en.status == EnrollmentStatus.STOPPED.value,
                en.stop_reason.in_(
                    [literal_column(f"'{BOUNCED}'"), literal_column(f"'{OPTED_OUT}'")]
                ),
                en.updated_at >= since,
            )
            .distinct()
            .limit(1000)
        )
        if org_id is not None:
            query = query.where(en.org_id == org_id)
        return [(int(o), int(j)) for o, j in self._s.execute(query)]

    def settings(self, org_id: int) -> CadenceSettings:
        """The organization's cadence settings (defaults where it set none)."""
        stored = self._s.scalar(
            select(m.Organization.cadence_settings).where(m.Organization.id == org_id)
        )
        return settings_from(stored)

    def save_settings(self, org_id: int, settings: CadenceSettings) -> None:
        """Store the organization's cadence settings."""
        self._s.execute(
            update(m.Organization)
            .where(m.Organization.id == org_id)
            .values(cadence_settings=settings.model_dump(mode="json", exclude_defaults=True))
        )
