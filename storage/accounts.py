"""Organizations, users and API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

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
    """Bind a Slack workspace to an organization (one workspace, one org).

    Refuses a workspace bound to another organization, and an organization bound to
    another workspace (moving it would cut its users off from their cards).
    """
    other = org_for_slack_team(session, team_id)
    if other is not None and other.id != org_id:
        raise Conflict(f"Slack workspace {team_id} already belongs to organization {other.slug}")
    row = session.get(m.Organization, org_id)
    if row is None:
        raise NotFound(f"organization {org_id} not found")
    if row.slack_team_id is not None and row.slack_team_id != team_id:
        raise Conflict(
            f"organization {row.slug} is already bound to Slack workspace {row.slack_team_id}"
        )
    row.slack_team_id = team_id
    session.flush()


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


def find_user_id(session: Session, org_id: int, email: str) -> int | None:
    """Return the id of the user with this email in the organization, if any."""
    return session.scalar(
        select(m.User.id).where(m.User.org_id == org_id, m.User.email == email.strip().lower())
    )


# Slack may not tell us an installer's address (no users:read.email); users.email is
# required, so such an installer gets an address in the reserved .invalid domain, which
# no mail is ever sent to, and is found again by their Slack id.
_NO_EMAIL_DOMAIN = "slack-user.invalid"


def make_installer_admin(
    session: Session,
    org_id: int,
    *,
    slack_user_id: str,
    email: str | None,
    name: str | None,
) -> UserRecord | None:
    """Make the Slack user who installed the app an admin, if the organization has none.

    The installer is linked to the user with their email address (or their Slack id when
    Slack gave no address), or added. Returns the admin, or None if there already was one.
    """
    has_admin = session.scalar(
        select(m.User.id).where(m.User.org_id == org_id, m.User.role == UserRole.ADMIN.value)
    )
    if has_admin is not None:
        return None
    row = None
    if email:
        user_id = find_user_id(session, org_id, email)
        row = session.get(m.User, user_id) if user_id is not None else None
    if row is None:
        row = session.scalars(
            select(m.User).where(m.User.org_id == org_id, m.User.slack_user_id == slack_user_id)
        ).first()
    if row is None:
        address = email or f"{slack_user_id.lower()}@{_NO_EMAIL_DOMAIN}"
        row = m.User(org_id=org_id, email=address.strip().lower(), name=name)
        session.add(row)
    row.role = UserRole.ADMIN.value
    row.slack_user_id = slack_user_id
    if name and not row.name:
        row.name = name
    session.flush()
    return _user(row)


@dataclass(frozen=True)
class OrgSummary:
    """An organization as `salesbot org list` shows it."""

    id: int
    slug: str
    name: str
    slack_team_id: str | None
    slack_team_name: str | None
    admins: tuple[str, ...]
    users: int
    clients: int
    contacts: int
    campaigns: int
    tokens: int


def list_orgs(session: Session) -> list[OrgSummary]:
    """Return every organization with its workspace, admins and counts, by slug."""
    orgs = session.scalars(select(m.Organization).order_by(m.Organization.slug)).all()

    def counts(org_id: InstrumentedAttribute[int], *where: ColumnElement[bool]) -> dict[int, int]:
        query = select(org_id, func.count()).where(*where).group_by(org_id)
        return {row[0]: row[1] for row in session.execute(query)}

    users = counts(m.User.org_id)
    clients = counts(m.Client.org_id)
    contacts = counts(m.Contact.org_id)
    campaigns = counts(m.MarketingCampaign.org_id)
    tokens = counts(m.ApiToken.org_id, m.ApiToken.revoked_at.is_(None))
    admins: dict[int, list[str]] = {}
    for org_id, email in session.execute(
        select(m.User.org_id, m.User.email)
        .where(m.User.role == UserRole.ADMIN.value)
        .order_by(m.User.email)
    ):
        admins.setdefault(org_id, []).append(email)
    team_names: dict[str, str] = {}
    for team_id, team_name in session.execute(
        select(m.SlackInstallation.team_id, m.SlackInstallation.team_name)
        .where(m.SlackInstallation.team_id.is_not(None))
        .order_by(m.SlackInstallation.installed_at)
    ):
        if team_id and team_name:
            team_names[team_id] = team_name
    return [
        OrgSummary(
            id=org.id,
            slug=org.slug,
            name=org.name,
            slack_team_id=org.slack_team_id,
            slack_team_name=team_names.get(org.slack_team_id or ""),
            admins=tuple(admins.get(org.id, ())),
            users=users.get(org.id, 0),
            clients=clients.get(org.id, 0),
            contacts=contacts.get(org.id, 0),
            campaigns=campaigns.get(org.id, 0),
            tokens=tokens.get(org.id, 0),
        )
        for org in orgs
    ]


@dataclass(frozen=True)
class TokenSummary:
    """An API token as `salesbot token list` shows it: never its secret or hash."""

    id: int
    name: str
    scope: TokenScope
    user_email: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def list_tokens(session: Session, org_id: int) -> list[TokenSummary]:
    """Return the API tokens of an organization, oldest first."""
    rows = session.execute(
        select(
            m.ApiToken.id,
            m.ApiToken.name,
            m.ApiToken.scope,
            m.User.email,
            m.ApiToken.created_at,
            m.ApiToken.last_used_at,
            m.ApiToken.revoked_at,
        )
        .outerjoin(m.User, m.User.id == m.ApiToken.user_id)
        .where(m.ApiToken.org_id == org_id)
        .order_by(m.ApiToken.id)
    )
    return [
        TokenSummary(
            id=row[0],
            name=row[1],
            scope=TokenScope(row[2]),
            user_email=row[3],
            created_at=row[4],
            last_used_at=row[5],
            revoked_at=row[6],
        )
        for row in rows
    ]


def _user(row: m.User) -> UserRecord:
    return UserRecord(row.id, row.org_id, row.email, row.name, row.role, row.slack_user_id)
