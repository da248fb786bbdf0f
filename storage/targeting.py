"""Lead scores and the stale-client ranking: facts read set-based, scores written in bulk.

Callers own the transaction; nothing here commits.

Reads are a few GROUP BY queries whatever the number of contacts: a page of contacts (by
id) with their clients' last orders; the orders of their clients in the volume window (or,
for a whole organization's run, every client's count once); and, only for the contacts
whose engagement is above 0, the time of their latest scored event (what their stored
score decays from). Lists of ids go in chunks (`storage.sql.one_of`: one array parameter on
PostgreSQL, IN lists SQLite can hold).

Writes: a page of scores is one statement on PostgreSQL (`UPDATE contacts … FROM
unnest(ids, scores)`), after its rows are locked in id order (the order the engagement
writers lock them in, so the two never deadlock); an executemany by id on SQLite. A
ranking is replaced as a whole (delete, insert) in one transaction that first locks the
organization's row, so two runs of the same organization take turns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.contacts import EmailStatus
from domain.errors import InvalidInput
from domain.lead_scoring import LeadContext, LeadFacts, LeadScoringSettings
from domain.targeting import (
    BestContact,
    RankedContact,
    RankedStaleClient,
    StaleClient,
    StaleClientFacts,
    StaleTargetingSettings,
    TargetingRun,
)
from storage import models as m
from storage.sql import chunks, one_of, rowcount

_H = m.ContactEngagementEvent
_Settings = TypeVar("_Settings", bound=BaseModel)
# Ids per statement: within SQLite's 32,766 variables, and a short array on PostgreSQL.
CHUNK = 5000


def _table(model: type[m.Base]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


class TargetingRepo:
    """Contacts' lead scores, and each organization's ranking of stale clients."""

    def __init__(self, session: Session) -> None:
        self._s = session

    @property
    def _postgres(self) -> bool:
        return self._s.get_bind().dialect.name == "postgresql"

    # --- settings and the last run ---------------------------------------------------------

    def _section(self, raw: Any, org_id: int, name: str, model: type[_Settings]) -> _Settings:
        section = (raw or {}).get(name, {}) if isinstance(raw, dict) else {}
        try:
            return model.model_validate(section)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error.get("loc", ()))
            raise InvalidInput(
                f"the analytics settings of organization {org_id} are invalid: {name}"
                f"{'.' + where if where else ''}: {error.get('msg', '')}"
            ) from exc

    def lead_context(self, org_id: int) -> LeadContext:
        """Return the organization's lead-scoring settings and its last run's figures."""
        o, r = m.Organization, m.TargetingRun
        row = self._s.execute(
            select(o.analytics_settings, r.busiest_client_orders, r.computed_at)
            .outerjoin(r, r.org_id == o.id)
            .where(o.id == org_id)
        ).one_or_none()
        settings = self._section(
            row.analytics_settings if row else None, org_id, "lead_scoring", LeadScoringSettings
        )
        if row is None or row.computed_at is None:
            return LeadContext(settings=settings, busiest_client_orders=None, scored_at=None)
        return LeadContext(
            settings=settings,
            busiest_client_orders=int(row.busiest_client_orders),
            scored_at=row.computed_at,
        )

    def targeting_settings(self, org_id: int) -> StaleTargetingSettings:
        """Return the organization's stale-client targeting settings."""
        raw = self._s.scalar(
            select(m.Organization.analytics_settings).where(m.Organization.id == org_id)
        )
        return self._section(raw, org_id, "targeting", StaleTargetingSettings)

    def last_run(self, org_id: int) -> TargetingRun | None:
        """Return the organization's latest run (None: never tried)."""
        row = self._s.scalar(select(m.TargetingRun).where(m.TargetingRun.org_id == org_id))
        return None if row is None else _run(row)

    # --- lead scores ---------------------------------------------------------------------

    def busiest_client_orders(self, org_id: int, *, since: datetime, until: datetime) -> int:
        """Return the most orders one client of the organization placed in [since, until]."""
        o = m.AppraisalOrder
        counts = (
            select(func.count().label("n"))
            .where(o.org_id == org_id, o.ordered_at >= since, o.ordered_at <= until)
            .group_by(o.client_id)
            .subquery()
        )
        return int(self._s.scalar(select(func.max(counts.c.n))) or 0)

    def client_order_counts(
        self, org_id: int, *, since: datetime, until: datetime
    ) -> dict[int, int]:
        """Return each client's orders in [since, until] (clients without any left out)."""
        o = m.AppraisalOrder
        rows = self._s.execute(
            select(o.client_id, func.count())
            .where(o.org_id == org_id, o.ordered_at >= since, o.ordered_at <= until)
            .group_by(o.client_id)
        )
        return {client_id: int(n) for client_id, n in rows}

    def _counts_of(
        self, org_id: int, client_ids: Sequence[int], *, since: datetime, until: datetime
    ) -> dict[int, int]:
        o = m.AppraisalOrder
        found: dict[int, int] = {}
        for part in chunks(sorted(set(client_ids)), CHUNK):
            rows = self._s.execute(
                select(o.client_id, func.count())
                .where(
                    o.org_id == org_id,
                    one_of(self._s, o.client_id, part, BigInteger()),
                    o.ordered_at >= since,
                    o.ordered_at <= until,
                )
                .group_by(o.client_id)
            )
            found.update({client_id: int(n) for client_id, n in rows})
        return found

    def _contacts(
        self, org_id: int, where: Sequence[ColumnElement[bool]], *, limit: int | None = None
    ) -> list[Any]:
        c, cl = m.Contact, m.Client
        query = (
            select(
                c.id,
                c.role_code,
                c.role_category,
                c.engagement_score,
                c.last_replied_at,
                c.client_id,
                cl.last_ordered_at,
                c.lead_score,
                c.lead_score_at,
            )
            .outerjoin(cl, and_(cl.id == c.client_id, cl.org_id == c.org_id))
            .where(c.org_id == org_id, *where)
            .order_by(c.id)
        )
        if limit is not None:
            query = query.limit(limit)
        return list(self._s.execute(query))

    def _engaged_at(self, org_id: int, contact_ids: Sequence[int]) -> dict[int, datetime]:
        """When each contact's stored engagement score was reached (its latest scored event)."""
        found: dict[int, datetime] = {}
        for part in chunks(sorted(set(contact_ids)), CHUNK):
            rows = self._s.execute(
                select(_H.contact_id, func.max(_H.occurred_at))
                .where(
                    _H.org_id == org_id,
                    one_of(self._s, _H.contact_id, part, BigInteger()),
                    _H.score_after.is_not(None),
                )
                .group_by(_H.contact_id)
            )
            found.update({contact_id: at for contact_id, at in rows if at is not None})
        return found

    def _facts(
        self, org_id: int, rows: Sequence[Any], counts: Mapping[int, int], busiest: int
    ) -> list[LeadFacts]:
        # Rows unpacked as tuples, in `_contacts`' column order: reading 200,000 rows'
        # attributes by name costs as much as the queries.
        engaged = self._engaged_at(org_id, [row[0] for row in rows if (row[3] or 0) > 0])
        return [
            LeadFacts(
                contact_id=contact_id,
                role_code=role_code,
                role_category=role_category,
                client_orders=counts.get(client_id, 0) if client_id is not None else 0,
                busiest_client_orders=busiest,
                engagement_score=float(engagement or 0.0),
                engagement_at=engaged.get(contact_id),
                client_last_ordered_at=last_ordered_at,
                last_replied_at=last_replied_at,
                stored_score=stored_score,
                stored_at=stored_at,
            )
            for (
                contact_id,
                role_code,
                role_category,
                engagement,
                last_replied_at,
                client_id,
                last_ordered_at,
                stored_score,
                stored_at,
            ) in rows
        ]

    def lead_facts_page(
        self,
        org_id: int,
        *,
        after_id: int,
        limit: int,
        counts: Mapping[int, int],
        busiest: int,
    ) -> list[LeadFacts]:
        """Return the facts of the next `limit` contacts after `after_id`, in id order."""
        rows = self._contacts(org_id, [m.Contact.id > after_id], limit=limit)
        return self._facts(org_id, rows, counts, busiest)

    def lead_facts_of(
        self,
        org_id: int,
        *,
        contact_ids: Sequence[int],
        client_ids: Sequence[int],
        since: datetime,
        until: datetime,
        busiest: int,
    ) -> list[LeadFacts]:
        """Return the facts of these contacts and of every contact of these clients."""
        c = m.Contact
        rows: dict[int, Any] = {}
        for column, ids in ((c.id, contact_ids), (c.client_id, client_ids)):
            for part in chunks(sorted(set(ids)), CHUNK):
                for row in self._contacts(org_id, [one_of(self._s, column, part, BigInteger())]):
                    rows[row.id] = row
        found = [rows[contact_id] for contact_id in sorted(rows)]
        clients = [row.client_id for row in found if row.client_id is not None]
        counts = self._counts_of(org_id, clients, since=since, until=until)
        return self._facts(org_id, found, counts, busiest)

    def save_lead_scores(
        self, org_id: int, scores: Sequence[tuple[int, int]], *, at: datetime
    ) -> None:
        """Write (contact id, score) pairs and `lead_score_at` in bulk."""
        ordered = sorted(scores)
        table = _table(m.Contact)
        for part in chunks(ordered, CHUNK):
            ids = [contact_id for contact_id, _ in part]
            if self._postgres:
                # Locked in id order first: the engagement writers lock contacts in that
                # order, and an UPDATE … FROM locks rows in the order its join finds them.
                self._s.execute(
                    select(table.c.id)
                    .where(
                        table.c.org_id == org_id, one_of(self._s, m.Contact.id, ids, BigInteger())
                    )
                    .order_by(table.c.id)
                    .with_for_update()
                ).all()
                given = (
                    func.unnest(
                        bindparam("ids", ids, type_=postgresql.ARRAY(BigInteger())),
                        bindparam(
                            "scores", [s for _, s in part], type_=postgresql.ARRAY(Integer())
                        ),
                    )
                    .table_valued("id", "score")
                    .render_derived(name="given")
                )
                self._s.execute(
                    update(table)
                    .where(table.c.org_id == org_id, table.c.id == given.c.id)
                    .values(lead_score=given.c.score, lead_score_at=at)
                )
            else:
                self._s.execute(
                    update(table)
                    .where(table.c.org_id == org_id, table.c.id == bindparam("contact"))
                    .values(lead_score=bindparam("score"), lead_score_at=at),
                    [{"contact": contact_id, "score": score} for contact_id, score in part],
                )

    # --- the ranking ---------------------------------------------------------------------

    def stale_clients(
        self, org_id: int, *, stale_before: datetime, now: datetime, peak_since: datetime
    ) -> list[StaleClientFacts]:
        """Return the clients whose last order is before `stale_before`, with their orders
        and their best reachable contact (engagement peak since `peak_since`)."""
        o, cl, c = m.AppraisalOrder, m.Client, m.Contact
        stale = and_(cl.org_id == org_id, cl.last_ordered_at < stale_before)
        orders = self._s.execute(
            select(
                o.client_id,
                func.count(),
                func.min(o.ordered_at),
                func.max(o.ordered_at),
            )
            .join(cl, cl.id == o.client_id)
            .where(o.org_id == org_id, stale)
            .group_by(o.client_id)
        ).all()
        rank = (
            func.row_number()
            .over(
                partition_by=c.client_id,
                order_by=(c.lead_score.desc().nulls_last(), c.engagement_score.desc(), c.id),
            )
            .label("rn")
        )
        reachable = (
            select(
                c.client_id,
                c.id,
                c.lead_score,
                c.engagement_score,
                c.last_positive_interaction_at,
                rank,
                func.count().over(partition_by=c.client_id).label("reachable"),
            )
            .join(cl, cl.id == c.client_id)
            .where(
                c.org_id == org_id,
                stale,
                c.opted_out_at.is_(None),
                c.email_status == EmailStatus.VALID.value,
                or_(c.paused_until.is_(None), c.paused_until <= now),
            )
            .subquery()
        )
        best_rows = {
            row.client_id: row
            for row in self._s.execute(select(reachable).where(reachable.c.rn == 1))
        }
        peaks: dict[int, tuple[datetime | None, float | None]] = {}
        for part in chunks(sorted(row.id for row in best_rows.values()), CHUNK):
            for contact_id, last_at, peak in self._s.execute(
                select(
                    _H.contact_id,
                    func.max(_H.occurred_at).filter(_H.score_after.is_not(None)),
                    func.max(_H.score_after).filter(_H.occurred_at >= peak_since),
                )
                .where(_H.org_id == org_id, one_of(self._s, _H.contact_id, part, BigInteger()))
                .group_by(_H.contact_id)
            ):
                peaks[contact_id] = (last_at, None if peak is None else float(peak))
        facts = []
        for client_id, count, first_at, last_at in orders:
            row = best_rows.get(client_id)
            best = None
            if row is not None:
                engaged_at, peak = peaks.get(row.id, (None, None))
                best = BestContact(
                    contact_id=row.id,
                    lead_score=row.lead_score,
                    engagement_score=float(row.engagement_score or 0.0),
                    engagement_at=engaged_at,
                    engagement_peak=peak,
                    last_positive_interaction_at=row.last_positive_interaction_at,
                )
            facts.append(
                StaleClientFacts(
                    client_id=client_id,
                    orders=int(count),
                    first_ordered_at=first_at,
                    last_ordered_at=last_at,
                    reachable_contacts=int(row.reachable) if row is not None else 0,
                    best=best,
                )
            )
        return facts

    def replace_ranking(
        self, org_id: int, ranked: Sequence[RankedStaleClient], *, run: TargetingRun
    ) -> None:
        """Replace the organization's ranking as a whole and record the run."""
        o = m.Organization
        # Two runs of one organization take turns here (SQLite: writers are serialised).
        self._s.execute(select(o.id).where(o.id == org_id).with_for_update()).all()
        self._s.execute(delete(m.ClientRanking).where(m.ClientRanking.org_id == org_id))
        rows = [
            {
                "org_id": org_id,
                "client_id": r.client_id,
                "rank": r.rank,
                "score": r.score,
                "days_since_order": r.days_since_order,
                "past_order_rate": r.past_order_rate,
                "engagement_decay": r.engagement_decay,
                "best_contact_id": r.best_contact_id,
                "reasons": r.reasons,
                "computed_at": run.computed_at,
            }
            for r in ranked
        ]
        for part in chunks(rows, 1000):
            self._s.execute(insert(m.ClientRanking), part)
        self._upsert_run(
            org_id,
            computed_at=run.computed_at,
            busiest_client_orders=run.busiest_client_orders,
            contacts_scored=run.contacts_scored,
            clients_considered=run.clients_considered,
            clients_ranked=run.clients_ranked,
            duration_ms=run.duration_ms,
            error=None,
        )

    def _upsert_run(self, org_id: int, **values: Any) -> None:
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        stmt = dialect_insert(m.TargetingRun).values(org_id=org_id, **values)
        self._s.execute(stmt.on_conflict_do_update(index_elements=["org_id"], set_=values))

    def claim_due_org(
        self, *, now: datetime, computed_before: datetime, attempted_before: datetime
    ) -> int | None:
        """Claim the organization whose ranking is the oldest and due (compare-and-set on
        `attempted_at`); None when none is due."""
        o, r = m.Organization, m.TargetingRun
        due = (
            select(o.id)
            .outerjoin(r, r.org_id == o.id)
            .where(
                or_(r.computed_at.is_(None), r.computed_at < computed_before),
                or_(r.attempted_at.is_(None), r.attempted_at < attempted_before),
            )
            .order_by(r.computed_at.asc().nulls_first(), o.id)
            .limit(1)
        )
        for _ in range(3):  # another claimer took the one found: look again
            org_id = self._s.scalar(due)
            if org_id is None:
                return None
            dialect_insert = postgresql.insert if self._postgres else sqlite.insert
            self._s.execute(
                dialect_insert(r)
                .values(org_id=org_id)
                .on_conflict_do_nothing(index_elements=["org_id"])
            )
            claimed = self._s.execute(
                update(r)
                .where(
                    r.org_id == org_id,
                    or_(r.attempted_at.is_(None), r.attempted_at < attempted_before),
                )
                .values(attempted_at=now),
                execution_options={"synchronize_session": False},
            )
            if rowcount(claimed) == 1:
                return int(org_id)
        return None

    def record_failure(self, org_id: int, *, error: str) -> None:
        """Record why the organization's run failed (shown until one succeeds)."""
        self._upsert_run(org_id, error=error[:1000])

    def ranking(self, org_id: int, *, limit: int) -> list[StaleClient]:
        """Return the stored ranking, best first, with client and contact names."""
        r, cl, c = m.ClientRanking, m.Client, m.Contact
        rows = self._s.execute(
            select(
                r.rank,
                r.client_id,
                cl.name,
                r.score,
                r.days_since_order,
                cl.last_ordered_at,
                r.past_order_rate,
                r.engagement_decay,
                r.reasons,
                c.id.label("contact_id"),
                c.first_name,
                c.last_name,
                c.email,
                c.lead_score,
            )
            .join(cl, and_(cl.id == r.client_id, cl.org_id == r.org_id))
            .outerjoin(c, and_(c.id == r.best_contact_id, c.org_id == r.org_id))
            .where(r.org_id == org_id)
            .order_by(r.rank)
            .limit(limit)
        )
        return [
            StaleClient(
                rank=row.rank,
                client_id=row.client_id,
                client_name=row.name,
                score=row.score,
                days_since_order=row.days_since_order,
                last_ordered_at=row.last_ordered_at,
                past_order_rate=row.past_order_rate,
                engagement_decay=row.engagement_decay,
                best_contact=None
                if row.contact_id is None
                else RankedContact(
                    contact_id=row.contact_id,
                    name=" ".join(p for p in (row.first_name, row.last_name) if p) or row.email,
                    email=row.email,
                    lead_score=row.lead_score,
                ),
                reasons=dict(row.reasons or {}),
            )
            for row in rows
        ]


def _run(row: m.TargetingRun) -> TargetingRun:
    return TargetingRun(
        org_id=row.org_id,
        computed_at=row.computed_at,
        attempted_at=row.attempted_at,
        busiest_client_orders=row.busiest_client_orders,
        contacts_scored=row.contacts_scored,
        clients_considered=row.clients_considered,
        clients_ranked=row.clients_ranked,
        duration_ms=row.duration_ms,
        error=row.error,
    )
