"""The repository of auto-reply policies (`org_reply_policies`): one per organization."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.classification import Category
from domain.reply_policy import AUTO_ALLOWED, ReplyPolicy
from storage import models as m

_KNOWN = {c.value: c for c in Category}


class ReplyPolicyRepo:
    """Each organization's auto-reply policy; the unit of work commits."""

    def __init__(self, session: Session) -> None:
        self._s = session

    @staticmethod
    def _to_domain(row: m.OrgReplyPolicy) -> ReplyPolicy:
        return ReplyPolicy(
            enabled=row.enabled,
            # A name no longer a category (or one now forbidden) is dropped, not fatal: the
            # policy only narrows, so a dropped name means fewer replies sent unreviewed.
            categories=frozenset(
                _KNOWN[c] for c in row.categories if c in _KNOWN and _KNOWN[c] in AUTO_ALLOWED
            ),
            min_confidence=row.min_confidence,
            updated_by=row.updated_by,
            updated_at=row.updated_at,
        )

    def get(self, org_id: int) -> ReplyPolicy:
        """Return the organization's policy, or the defaults when none is stored."""
        row = self._s.get(m.OrgReplyPolicy, org_id)
        return self._to_domain(row) if row is not None else ReplyPolicy()

    def save(
        self, org_id: int, policy: ReplyPolicy, *, by: int | None, now: datetime
    ) -> ReplyPolicy:
        """Store the organization's policy in place of any before it (one statement, so two
        admins saving at once leave one policy, the later one); return it as stored."""
        values = {
            "org_id": org_id,
            "enabled": policy.enabled,
            "categories": sorted(c.value for c in policy.categories),
            "min_confidence": policy.min_confidence,
            "updated_by": by,
            "updated_at": now,
        }
        dialect = self._s.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(m.OrgReplyPolicy).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["org_id"],
            set_={k: stmt.excluded[k] for k in values if k != "org_id"},
        )
        self._s.execute(stmt)
        row = self._s.get(m.OrgReplyPolicy, org_id, populate_existing=True)
        assert row is not None  # written by the statement above, in this transaction
        return self._to_domain(row)
