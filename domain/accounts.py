"""Accounts: organizations, their users, API tokens and the Slack workspace each one is bound to.

The rules are functions over the account repositories, so that the `Accounts` use cases
and the Slack installation store (which Bolt calls inside its own transaction) apply the
same ones. The use cases each own one unit of work and commit once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from domain.clock import Clock
from domain.contacts import TokenScope, UserRole, normalize_email
from domain.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    # domain.ports names these records in its repository Protocols.
    from domain.ports import AccountsUnitOfWork, OrgRepository, TokenRepository, UserRepository

TOKEN_PREFIX: Final = "sbt_"
# Reads authenticate as often as writes: touching last-used at most this often keeps most
# authenticated reads from becoming writes.
TOKEN_TOUCH_INTERVAL: Final = timedelta(seconds=60)
# Slack may not tell us an installer's address (no users:read.email); users.email is
# required, so such an installer gets an address in the reserved .invalid domain, which
# no mail is ever sent to, and is found again by their Slack id.
NO_EMAIL_DOMAIN: Final = "slack-user.invalid"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Org:
    """An organization (a tenant), and the Slack workspace it is bound to, if any."""

    id: int
    slug: str
    name: str
    slack_team_id: str | None = None


@dataclass(frozen=True)
class User:
    """A Salesbot user of one organization."""

    id: int
    org_id: int
    email: str
    name: str | None
    role: str
    slack_user_id: str | None

    @property
    def label(self) -> str:
        """How the user is named in a sentence: their name, else their email."""
        return self.name or self.email


@dataclass(frozen=True)
class TokenIdentity:
    """Who an API request acts as."""

    token_id: int
    org_id: int
    user_id: int | None
    scope: TokenScope


@dataclass(frozen=True)
class StoredToken:
    """An API token as kept: what it acts as and when it was last used or revoked."""

    id: int
    org_id: int
    user_id: int | None
    scope: TokenScope
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    """A new API token and its secret; the secret exists nowhere else and is shown once."""

    id: int
    org: Org
    scope: TokenScope
    secret: str


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


class UnknownUser(NotFound):
    """An address that is not a user of the organization."""

    def __init__(self, email: str, org: Org) -> None:
        super().__init__(f"{email} is not a user of {org.slug}")
        self.email = email
        self.org = org


# --- rules ----------------------------------------------------------------------------------


def hash_token(secret: str) -> str:
    """Return the stored form of an API token: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def add_org(orgs: OrgRepository, *, slug: str, name: str) -> Org:
    """Create an organization with a unique slug."""
    slug = slug.strip().lower()
    if not _SLUG.match(slug):
        raise InvalidInput("slug must be 2-63 characters of a-z, 0-9 and '-'", field="slug")
    if orgs.find_by_slug(slug) is not None:
        raise Conflict(f"organization {slug!r} already exists")
    return orgs.add(slug=slug, name=name.strip() or slug)


def find_org(orgs: OrgRepository, slug_or_id: str) -> Org:
    """Return an organization by slug or numeric id, or raise NotFound."""
    if slug_or_id.isdigit():
        found = orgs.find(int(slug_or_id))
    else:
        found = orgs.find_by_slug(slug_or_id.strip().lower())
    if found is None:
        raise NotFound(f"organization {slug_or_id!r} not found")
    return found


def bind_slack_team(orgs: OrgRepository, org_id: int, team_id: str) -> Org:
    """Bind a Slack workspace to an organization (one workspace, one org).

    Refuses a workspace bound to another organization, and an organization bound to
    another workspace (moving it would cut its users off from their cards).
    """
    other = orgs.find_by_slack_team(team_id)
    if other is not None and other.id != org_id:
        raise Conflict(f"Slack workspace {team_id} already belongs to organization {other.slug}")
    org = orgs.find(org_id)
    if org is None:
        raise NotFound(f"organization {org_id} not found")
    if org.slack_team_id is not None and org.slack_team_id != team_id:
        raise Conflict(
            f"organization {org.slug} is already bound to Slack workspace {org.slack_team_id}"
        )
    orgs.set_slack_team(org_id, team_id)
    return replace(org, slack_team_id=team_id)


def ensure_user(
    users: UserRepository,
    org_id: int,
    *,
    email: str,
    name: str | None = None,
    role: UserRole = UserRole.REP,
    slack_user_id: str | None = None,
) -> User:
    """Return the user with this email, adding them (with this role) if there is none."""
    email = normalize_email(email)
    found = users.find_by_email(org_id, email)
    if found is not None:
        return found
    return users.add(org_id, email=email, name=name, role=role, slack_user_id=slack_user_id)


def link_slack_user(
    users: UserRepository,
    org_id: int,
    *,
    slack_user_id: str,
    email: str,
    name: str | None,
    role: UserRole = UserRole.REP,
) -> User:
    """Find the user by email (or add one with this role) and record their Slack id."""
    user = ensure_user(users, org_id, email=email, name=name, role=role)
    linked = replace(user, slack_user_id=slack_user_id, name=_kept_name(user, name))
    users.save(linked)
    return linked


def appoint_installer(
    users: UserRepository,
    org_id: int,
    *,
    slack_user_id: str,
    email: str | None,
    name: str | None,
) -> User | None:
    """Make the Slack user who installed the app an admin, if the organization has none.

    The installer is linked to the user with their email address (or their Slack id when
    Slack gave no address), or added. Returns the admin, or None if there already was one.
    """
    if users.has_admin(org_id):
        return None
    found = users.find_by_email(org_id, normalize_email(email)) if email else None
    if found is None:
        found = users.find_by_slack_id(org_id, slack_user_id)
    if found is None:
        address = email or f"{slack_user_id.lower()}@{NO_EMAIL_DOMAIN}"
        return users.add(
            org_id,
            email=normalize_email(address),
            name=name,
            role=UserRole.ADMIN,
            slack_user_id=slack_user_id,
        )
    admin = replace(
        found,
        role=UserRole.ADMIN.value,
        slack_user_id=slack_user_id,
        name=_kept_name(found, name),
    )
    users.save(admin)
    return admin


def _kept_name(user: User, offered: str | None) -> str | None:
    """A user's name stays; a name Slack offers fills only a missing one."""
    return offered if offered and not user.name else user.name


def issue_token(
    tokens: TokenRepository,
    org: Org,
    *,
    name: str,
    scope: TokenScope = TokenScope.WRITE,
    user_id: int | None = None,
) -> IssuedToken:
    """Create an API token; only its hash is kept, so the secret returned is its one copy."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = tokens.add(
        org.id,
        name=name,
        scope=scope,
        user_id=user_id,
        token_hash=hash_token(secret),
        prefix=secret[:10],
    )
    return IssuedToken(id=token_id, org=org, scope=scope, secret=secret)


# --- use cases ------------------------------------------------------------------------------


class Accounts:
    """The account use cases: organizations, Slack links, users and API tokens."""

    def __init__(self, *, uow: Callable[[], AccountsUnitOfWork], clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def create_org(
        self,
        *,
        slug: str,
        name: str,
        admin_email: str | None = None,
        slack_team_id: str | None = None,
    ) -> Org:
        """Create an organization, optionally with an admin and bound to a Slack workspace."""
        with self._uow() as uow:
            org = add_org(uow.orgs, slug=slug, name=name)
            if admin_email:
                ensure_user(uow.users, org.id, email=admin_email, role=UserRole.ADMIN)
            if slack_team_id:
                org = bind_slack_team(uow.orgs, org.id, slack_team_id)
            uow.commit()
        return org

    def find_org(self, slug_or_id: str) -> Org:
        """Return an organization by slug or numeric id, or raise NotFound."""
        with self._uow() as uow:
            return find_org(uow.orgs, slug_or_id)

    def list_orgs(self) -> list[OrgSummary]:
        """Return every organization with its workspace, admins and counts, by slug."""
        with self._uow() as uow:
            return uow.orgs.list_summaries()

    def link_slack_team(self, slug_or_id: str, team_id: str) -> Org:
        """Bind an organization to a Slack workspace."""
        with self._uow() as uow:
            org = bind_slack_team(uow.orgs, find_org(uow.orgs, slug_or_id).id, team_id)
            uow.commit()
        return org

    def org_for_slack_team(self, team_id: str) -> Org | None:
        """Return the organization a Slack workspace is bound to, if any."""
        with self._uow() as uow:
            return uow.orgs.find_by_slack_team(team_id)

    def find_user(self, org_id: int, user_id: int) -> User | None:
        """Return a user of an organization, if there is one with this id."""
        with self._uow() as uow:
            return uow.users.find(org_id, user_id)

    def find_slack_user(self, team_id: str, slack_user_id: str) -> tuple[Org | None, User | None]:
        """Return the organization a Slack workspace is bound to, and the user linked to this
        Slack id in it (each None when there is none)."""
        with self._uow() as uow:
            org = uow.orgs.find_by_slack_team(team_id)
            if org is None:
                return None, None
            return org, uow.users.find_by_slack_id(org.id, slack_user_id)

    def link_first_seen_slack_user(
        self, org_id: int, *, slack_user_id: str, email: str, name: str | None
    ) -> User:
        """Link a Slack user seen for the first time to the user with their email address,
        or add them as a rep of the organization."""
        with self._uow() as uow:
            user = link_slack_user(
                uow.users, org_id, slack_user_id=slack_user_id, email=email, name=name
            )
            uow.commit()
        return user

    def bootstrap_sandbox(
        self,
        *,
        team_id: str,
        slug: str,
        name: str,
        admin_email: str,
        admin_slack_user_id: str,
        admin_name: str,
    ) -> Org:
        """Make sure the sandbox workspace has an organization and an admin linked to Slack.

        Safe to repeat: an organization already bound to the workspace is kept.
        """
        with self._uow() as uow:
            org = uow.orgs.find_by_slack_team(team_id)
            if org is None:
                org = add_org(uow.orgs, slug=slug, name=name)
                org = bind_slack_team(uow.orgs, org.id, team_id)
            ensure_user(uow.users, org.id, email=admin_email, role=UserRole.ADMIN)
            link_slack_user(
                uow.users,
                org.id,
                slack_user_id=admin_slack_user_id,
                email=admin_email,
                name=admin_name,
                role=UserRole.ADMIN,
            )
            uow.commit()
        return org

    def create_token(
        self,
        slug_or_id: str,
        *,
        name: str,
        scope: TokenScope = TokenScope.WRITE,
        user_email: str | None = None,
        create_user: bool = False,
    ) -> IssuedToken:
        """Create an API token, acting as the user with `user_email` if given.

        An address that is not a user yet raises UnknownUser, unless `create_user` adds
        them as a rep.
        """
        with self._uow() as uow:
            org = find_org(uow.orgs, slug_or_id)
            user_id = None
            if user_email:
                user = uow.users.find_by_email(org.id, normalize_email(user_email))
                if user is None and not create_user:
                    raise UnknownUser(user_email, org)
                if user is None:
                    user = ensure_user(uow.users, org.id, email=user_email)
                user_id = user.id
            issued = issue_token(uow.tokens, org, name=name, scope=scope, user_id=user_id)
            uow.commit()
        return issued

    def list_tokens(self, slug_or_id: str) -> tuple[Org, list[TokenSummary]]:
        """Return an organization and its API tokens, oldest first."""
        with self._uow() as uow:
            org = find_org(uow.orgs, slug_or_id)
            return org, uow.tokens.list_summaries(org.id)

    def revoke_token(self, slug_or_id: str, token_id: int) -> Org:
        """Revoke an API token of an organization, or raise NotFound."""
        with self._uow() as uow:
            org = find_org(uow.orgs, slug_or_id)
            if not uow.tokens.revoke(org.id, token_id, at=self._clock.now()):
                raise NotFound(f"token {token_id} not found")
            uow.commit()
        return org

    def authenticate_token(self, secret: str) -> TokenIdentity | None:
        """Return who a bearer token acts as, or None if it is unknown or revoked.

        Records when the token was last used (at most once a TOKEN_TOUCH_INTERVAL).
        """
        now = self._clock.now()
        with self._uow() as uow:
            token = uow.tokens.find_by_hash(hash_token(secret))
            if token is None or token.revoked_at is not None:
                return None
            if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
                uow.tokens.touch(token.id, at=now)
                uow.commit()
        return TokenIdentity(token.id, token.org_id, token.user_id, token.scope)
