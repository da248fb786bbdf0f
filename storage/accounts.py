"""Repositories of accounts: organizations, users and API tokens.

They read and write rows and return the records of `domain.accounts`; the rules (slugs,
one workspace per organization, who becomes an admin, token secrets) are in the domain.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from domain.accounts import (
    Org,
    OrgSummary,
    StoredToken,
    TokenSummary,
    User,
)

# handlers/api/gmail.py still imports the identity record from here.
from domain.accounts import TokenIdentity as TokenIdentity
from domain.contacts import TokenScope, UserRole
from domain.errors import NotFound
from storage import models as m
from storage.sql import rowcount


class OrgRepo:
    """Organizations and the Slack workspaces they are bound to."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, *, slug: str, name: str) -> Org:
        """Store a new organization (the slug is valid and free)."""
        row = m.Organization(slug=slug, name=name)
        self._s.add(row)
        self._s.flush()
        return _org(row)

    def find(self, org_id: int) -> Org | None:
        """Return the organization with this id, if any."""
        row = self._s.get(m.Organization, org_id)
        return None if row is None else _org(row)

    def find_by_slug(self, slug: str) -> Org | None:
        """Return the organization with this slug, if any."""
        return self._one(m.Organization.slug == slug)

    def find_by_slack_team(self, team_id: str) -> Org | None:
        """Return the organization bound to this Slack workspace, if any."""
        return self._one(m.Organization.slack_team_id == team_id)

    def set_slack_team(self, org_id: int, team_id: str) -> None:
        """Record the Slack workspace an organization is bound to."""
        row = self._s.get(m.Organization, org_id)
        if row is None:
            raise NotFound(f"organization {org_id} not found")
        row.slack_team_id = team_id
        self._s.flush()

    def triage_channel(self, org_id: int) -> str | None:
        """Return the organization's triage channel id, if one is set."""
        return self._s.scalar(
            select(m.Organization.triage_channel_id).where(m.Organization.id == org_id)
        )

    def set_triage_channel(self, org_id: int, channel_id: str | None) -> None:
        """Store the triage channel (None: none); raise NotFound for an unknown org."""
        result = self._s.execute(
            update(m.Organization)
            .where(m.Organization.id == org_id)
            .values(triage_channel_id=channel_id)
        )
        if not rowcount(result):
            raise NotFound(f"organization {org_id} not found")

    def _one(self, where: ColumnElement[bool]) -> Org | None:
        row = self._s.scalars(select(m.Organization).where(where)).one_or_none()
        return None if row is None else _org(row)

    def list_summaries(self) -> list[OrgSummary]:
        """Return every organization with its workspace, admins and counts, by slug."""
        session = self._s
        orgs = session.scalars(select(m.Organization).order_by(m.Organization.slug)).all()

        def counts(
            org_id: InstrumentedAttribute[int], *where: ColumnElement[bool]
        ) -> dict[int, int]:
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


class UserRepo:
    """Users of organizations; `find` is the one lookup of a user by id."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def find(self, org_id: int, user_id: int) -> User | None:
        """Return the user with this id in the organization, if any."""
        return self._one(m.User.org_id == org_id, m.User.id == user_id)

    def find_by_email(self, org_id: int, email: str) -> User | None:
        """Return the user with this (normalized) address in the organization, if any."""
        return self._one(m.User.org_id == org_id, m.User.email == email)

    def find_by_slack_id(self, org_id: int, slack_user_id: str) -> User | None:
        """Return the user linked to this Slack id in the organization, if any."""
        return self._one(m.User.org_id == org_id, m.User.slack_user_id == slack_user_id)

    def has_admin(self, org_id: int) -> bool:
        """Tell whether the organization has an admin."""
        found = self._s.scalar(
            select(m.User.id)
            .where(m.User.org_id == org_id, m.User.role == UserRole.ADMIN.value)
            .limit(1)
        )
        return found is not None

    def list_admins(self, org_id: int) -> list[User]:
        """Return the organization's admins, by id."""
        rows = self._s.scalars(
            select(m.User)
            .where(m.User.org_id == org_id, m.User.role == UserRole.ADMIN.value)
            .order_by(m.User.id)
        )
        return [_user(row) for row in rows]

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
        row = m.User(
            org_id=org_id, email=email, name=name, role=role.value, slack_user_id=slack_user_id
        )
        self._s.add(row)
        self._s.flush()
        return _user(row)

    def save(self, user: User) -> None:
        """Write a user's name, role and Slack id."""
        row = self._s.get(m.User, user.id)
        if row is None or row.org_id != user.org_id:
            raise NotFound(f"user {user.id} not found")
        row.name = user.name
        row.role = user.role
        row.slack_user_id = user.slack_user_id
        self._s.flush()

    def _one(self, *where: ColumnElement[bool]) -> User | None:
        row = self._s.scalars(select(m.User).where(*where)).one_or_none()
        return None if row is None else _user(row)


class TokenRepo:
    """API tokens, kept as hashes of their secrets."""

    def __init__(self, session: Session) -> None:
        self._s = session

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
        row = m.ApiToken(
            org_id=org_id,
            user_id=user_id,
            name=name,
            token_hash=token_hash,
            prefix=prefix,
            scope=scope.value,
        )
        self._s.add(row)
        self._s.flush()
        return row.id

    def find_by_hash(self, token_hash: str) -> StoredToken | None:
        """Return the token with this hash, if any."""
        row = self._s.scalars(
            select(m.ApiToken).where(m.ApiToken.token_hash == token_hash)
        ).one_or_none()
        if row is None:
            return None
        return StoredToken(
            id=row.id,
            org_id=row.org_id,
            user_id=row.user_id,
            scope=TokenScope(row.scope),
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )

    def touch(self, token_id: int, *, at: datetime) -> None:
        """Record when a token was last used."""
        self._s.execute(
            update(m.ApiToken)
            .where(m.ApiToken.id == token_id)
            .values(last_used_at=at)
            .execution_options(synchronize_session="fetch")
        )

    def revoke(self, org_id: int, token_id: int, *, at: datetime) -> bool:
        """Revoke a token of the organization; False if it has no such token."""
        result = self._s.execute(
            update(m.ApiToken)
            .where(m.ApiToken.org_id == org_id, m.ApiToken.id == token_id)
            .values(revoked_at=at)
        )
        return rowcount(result) > 0

    def list_summaries(self, org_id: int) -> list[TokenSummary]:
        """Return the organization's tokens, oldest first."""
        rows = self._s.execute(
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


def _org(row: m.Organization) -> Org:
    return Org(row.id, row.slug, row.name, row.slack_team_id)


def _user(row: m.User) -> User:
    return User(row.id, row.org_id, row.email, row.name, row.role, row.slack_user_id)


def user_label(session: Session, org_id: int, user_id: int | None) -> str:
    """Return how a user is named in messages: their name, else their email."""
    if user_id is None:
        return "the sender"
    user = UserRepo(session).find(org_id, user_id)
    return f"user {user_id}" if user is None else user.label


def user_slack_id(session: Session, org_id: int, user_id: int | None) -> str | None:
    """Return a user's Slack id, if they were linked to Slack."""
    user = None if user_id is None else UserRepo(session).find(org_id, user_id)
    return None if user is None else user.slack_user_id
