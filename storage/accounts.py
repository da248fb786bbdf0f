"""Organizations, users and API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain.contacts import TokenScope, UserRole
from domain.errors import Conflict, InvalidInput, NotFound
from storage import models as m

TOKEN_PREFIX = "sbt_"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


@dataclass(frozen=True)
class Org:
    """An organization (a tenant)."""

    id: int
    slug: str
    name: str


@dataclass(frozen=True)
class TokenIdentity:
    """Who an API request acts as."""

    token_id: int
    org_id: int
    user_id: int | None
    scope: TokenScope


def hash_token(token: str) -> str:
    """Return the stored form of an API token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_org(session: Session, *, slug: str, name: str) -> Org:
    """Create an organization with a unique slug."""
    slug = slug.strip().lower()
    if not _SLUG.match(slug):
        raise InvalidInput("slug must be 2-63 characters of a-z, 0-9 and '-'", field="slug")
    if session.scalar(select(m.Organization.id).where(m.Organization.slug == slug)):
        raise Conflict(f"organization {slug!r} already exists")
    row = m.Organization(slug=slug, name=name.strip() or slug)
    session.add(row)
    session.flush()
    return Org(row.id, row.slug, row.name)


def get_org(session: Session, slug_or_id: str) -> Org:
    """Find an organization by slug or numeric id."""
    query = select(m.Organization)
    if slug_or_id.isdigit():
        query = query.where(m.Organization.id == int(slug_or_id))
    else:
        query = query.where(m.Organization.slug == slug_or_id.strip().lower())
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFound(f"organization {slug_or_id!r} not found")
    return Org(row.id, row.slug, row.name)


def ensure_user(
    session: Session,
    org_id: int,
    *,
    email: str,
    name: str | None = None,
    role: UserRole = UserRole.REP,
    slack_user_id: str | None = None,
) -> int:
    """Return the id of the user with this email, creating it if needed."""
    email = email.strip().lower()
    found = session.scalar(select(m.User.id).where(m.User.org_id == org_id, m.User.email == email))
    if found is not None:
        return found
    row = m.User(
        org_id=org_id, email=email, name=name, role=role.value, slack_user_id=slack_user_id
    )
    session.add(row)
    session.flush()
    return row.id


def create_token(
    session: Session,
    org_id: int,
    *,
    name: str,
    scope: TokenScope = TokenScope.WRITE,
    user_id: int | None = None,
) -> tuple[int, str]:
    """Create an API token; return its id and the secret, which is shown only once."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = m.ApiToken(
        org_id=org_id,
        user_id=user_id,
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[:10],
        scope=scope.value,
    )
    session.add(row)
    session.flush()
    return row.id, secret


def revoke_token(session: Session, org_id: int, token_id: int, *, now: datetime) -> None:
    """Revoke a token of an organization."""
    result = session.execute(
        update(m.ApiToken)
        .where(m.ApiToken.org_id == org_id, m.ApiToken.id == token_id)
        .values(revoked_at=now)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"token {token_id} not found")


def authenticate_token(session: Session, secret: str, *, now: datetime) -> TokenIdentity | None:
    """Return who a bearer token acts as, or None if it is unknown or revoked."""
    row = session.scalars(
        select(m.ApiToken).where(m.ApiToken.token_hash == hash_token(secret))
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    # Touch at most once a minute, so reads do not all become writes.
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now
    return TokenIdentity(row.id, row.org_id, row.user_id, TokenScope(row.scope))


@dataclass(frozen=True)
class UserRecord:
    """A Salesbot user."""

    id: int
    org_id: int
    email: str
    name: str | None
    role: str
    slack_user_id: str | None


def org_for_slack_team(session: Session, team_id: str) -> Org | None:
    """Return the organization a Slack workspace belongs to, if any."""
    row = session.scalars(
        select(m.Organization).where(m.Organization.slack_team_id == team_id)
    ).one_or_none()
    return None if row is None else Org(row.id, row.slug, row.name)


def link_slack_team(session: Session, org_id: int, team_id: str) -> None:
    """Bind a Slack workspace to an organization (one workspace, one org)."""
    other = org_for_slack_team(session, team_id)
    if other is not None and other.id != org_id:
        raise Conflict(f"Slack workspace {team_id} already belongs to organization {other.slug}")
    session.execute(
        update(m.Organization).where(m.Organization.id == org_id).values(slack_team_id=team_id)
    )


def user_by_slack_id(session: Session, org_id: int, slack_user_id: str) -> UserRecord | None:
    """Return the user with this Slack id in the organization."""
    row = session.scalars(
        select(m.User).where(m.User.org_id == org_id, m.User.slack_user_id == slack_user_id)
    ).one_or_none()
    return None if row is None else _user(row)


def link_slack_user(
    session: Session,
    org_id: int,
    *,
    slack_user_id: str,
    email: str,
    name: str | None,
    role: UserRole = UserRole.REP,
) -> UserRecord:
    """Find the user by email (or create a rep) and record their Slack id."""
    user_id = ensure_user(session, org_id, email=email, name=name, role=role)
    row = session.get(m.User, user_id)
    assert row is not None
    row.slack_user_id = slack_user_id
    if name and not row.name:
        row.name = name
    session.flush()
    return _user(row)


def _user(row: m.User) -> UserRecord:
    return UserRecord(row.id, row.org_id, row.email, row.name, row.role, row.slack_user_id)
