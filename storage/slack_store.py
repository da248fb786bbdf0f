"""Slack OAuth install kept in our database: Bolt's installation store and OAuth state store.

Bolt calls these adapters itself (the /slack/oauth_redirect callback, the authorize step of
every request, the app_uninstalled and tokens_revoked events), outside our use cases, so each
method opens its own session and commits its own transaction.

Tokens, refresh tokens and the incoming-webhook URL are encrypted at rest with the cipher
given to the store, and never logged.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from slack_sdk.oauth.installation_store import Bot, Installation, InstallationStore
from slack_sdk.oauth.state_store import OAuthStateStore
from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from domain.accounts import add_org, appoint_installer, bind_slack_team
from domain.clock import Clock, SystemClock
from domain.errors import Conflict
from storage import models as m
from storage.accounts import OrgRepo, UserRepo
from storage.db import SessionFactory

log = logging.getLogger(__name__)

_SLUG_MAX = 56  # leaves room for a "-NNNNNN" suffix within the 63 characters a slug may have
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
# Latest install first; the id breaks ties between rows saved with the same install time.
_NEWEST_FIRST = (m.SlackInstallation.installed_at.desc(), m.SlackInstallation.id.desc())


class Cipher(Protocol):
    """Encrypts secrets for a binary column (integrations.crypto.SecretBox is one)."""

    def encrypt_bytes(self, plaintext: str) -> bytes:
        """Encrypt text to opaque bytes."""
        ...

    def decrypt_bytes(self, token: bytes) -> str:
        """Decrypt what encrypt_bytes made."""
        ...


# --- binding a workspace to an organization ---------------------------------------------


@dataclass(frozen=True)
class InstallerProfile:
    """The Slack user who approved an install, as users.info describes them."""

    slack_user_id: str
    email: str | None
    name: str | None


def bind_installation_to_org(session: Session, team_id: str, team_name: str | None) -> int:
    """Return the organization of a Slack workspace, creating and linking one on first install.

    The slug comes from the workspace name (the team id when the name has no usable
    characters), with "-2", "-3", ... appended until it is free.
    """
    orgs = OrgRepo(session)
    found = orgs.find_by_slack_team(team_id)
    if found is not None:
        return found.id
    name = (team_name or "").strip()[:200] or team_id
    base = _slug_base(name, team_id)
    attempt = 1
    while True:
        slug = base if attempt == 1 else f"{base}-{attempt}"
        attempt += 1
        if orgs.find_by_slug(slug) is not None:
            continue
        try:
            with session.begin_nested():
                org = add_org(orgs, slug=slug, name=name)
                bind_slack_team(orgs, org.id, team_id)
        except (IntegrityError, Conflict):
            # Another replica bound this workspace, or took this slug, since we looked.
            found = orgs.find_by_slack_team(team_id)
            if found is not None:
                return found.id
            continue
        log.info(
            "organization created for a slack workspace",
            extra={"org_id": org.id, "slug": org.slug, "team_id": team_id},
        )
        return org.id


def _slug_base(name: str, team_id: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_name.lower()).strip("-")[:_SLUG_MAX].rstrip("-")
    if len(slug) < 2:
        slug = _NOT_SLUG.sub("-", team_id.lower()).strip("-")[:_SLUG_MAX].rstrip("-")
    return slug if len(slug) >= 2 else "slack-workspace"


# --- installation store -------------------------------------------------------------------


class DbInstallationStore(InstallationStore):
    """slack_sdk's InstallationStore on the `slack_installations` table.

    Behaves as slack_sdk's SQLAlchemyInstallationStore, with one table instead of its two
    (installations and bots): every row is scoped by `client_id`; the latest row of a
    workspace (or of an org-wide install) wins; an org-wide install is found with
    `team_id=None`. A row with an installer is an installation; a row without one holds a
    bot only (saved by `save_bot`, or left by `delete_installation` so that the bot keeps
    working, as the bots table does in slack_sdk's store). `delete_bot` erases bot tokens
    from every row of the workspace instead of leaving them in the installation rows.
    Saving an install of a workspace binds it to an organization: the one an install link
    names, else the workspace's own (`bind_installation_to_org`); the installer becomes the
    admin of an organization that has none.
    """

    def __init__(
        self, session_factory: SessionFactory, secret_box: Cipher, *, client_id: str
    ) -> None:
        self._session_factory = session_factory
        self._box = secret_box
        self.client_id = client_id

    @property
    def logger(self) -> logging.Logger:
        """Return the logger slack_sdk and Bolt expect a store to have."""
        return log

    def save(
        self,
        installation: Installation,
        *,
        bind_to_org: int | None = None,
        installer: InstallerProfile | None = None,
    ) -> None:
        """Store an installation (or update the one with the same install time).

        With `bind_to_org`, the workspace is bound to that organization; Conflict (nothing
        stored) if the workspace belongs to another one, or the organization to another
        workspace. With `installer`, they become the admin of an organization without one.
        """
        installed_at = _at(installation.installed_at)
        with _transaction(self._session_factory) as session:
            if bind_to_org is not None and installation.team_id is not None:
                bind_slack_team(OrgRepo(session), bind_to_org, installation.team_id)
            org_id = self._org_of(session, installation.team_id, installation.team_name)
            if org_id is not None and installer is not None:
                admin = appoint_installer(
                    UserRepo(session),
                    org_id,
                    slack_user_id=installer.slack_user_id,
                    email=installer.email,
                    name=installer.name,
                )
                if admin is not None:
                    log.info(
                        "installer made admin",
                        extra={"org_id": org_id, "user_id": admin.id},
                    )
            row = self._row_installed_at(
                session, installation.enterprise_id, installation.team_id, installed_at
            )
            if row is None:
                row = m.SlackInstallation(client_id=self.client_id, installed_at=installed_at)
                session.add(row)
            row.org_id = org_id
            self._write_bot(row, installation.to_bot())
            row.enterprise_url = installation.enterprise_url
            row.token_type = installation.token_type
            row.installer_user_id = installation.user_id
            row.user_scopes = list(installation.user_scopes or [])
            row.user_token_encrypted = self._seal(installation.user_token)
            row.user_refresh_token_encrypted = self._seal(installation.user_refresh_token)
            row.user_token_expires_at = _at_or_none(installation.user_token_expires_at)
            row.incoming_webhook_url_encrypted = self._seal(installation.incoming_webhook_url)
            row.incoming_webhook_channel = installation.incoming_webhook_channel
            row.incoming_webhook_channel_id = installation.incoming_webhook_channel_id
            row.incoming_webhook_configuration_url = installation.incoming_webhook_configuration_url
            session.flush()
            log.info(
                "slack installation saved",
                extra={
                    "installation_id": row.id,
                    "org_id": row.org_id,
                    "enterprise_id": row.enterprise_id,
                    "team_id": row.team_id,
                    "installer_user_id": row.installer_user_id,
                },
            )

    def save_bot(self, bot: Bot) -> None:
        """Store a bot (e.g. after token rotation) on the row of its install time."""
        installed_at = _at(bot.installed_at)
        with _transaction(self._session_factory) as session:
            row = self._row_installed_at(session, bot.enterprise_id, bot.team_id, installed_at)
            if row is None:
                row = m.SlackInstallation(
                    client_id=self.client_id,
                    installed_at=installed_at,
                    org_id=self._org_of(session, bot.team_id, bot.team_name),
                )
                session.add(row)
            self._write_bot(row, bot)
            session.flush()
            log.info(
                "slack bot saved",
                extra={
                    "installation_id": row.id,
                    "org_id": row.org_id,
                    "enterprise_id": row.enterprise_id,
                    "team_id": row.team_id,
                },
            )

    def find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        """Return the latest bot of a workspace (or of an org-wide install), if any."""
        if is_enterprise_install or team_id is None:
            team_id = None
        with self._session_factory() as session:
            row = self._latest_bot_row(session, enterprise_id, team_id)
            return None if row is None else self._bot(row)

    def find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        """Return the latest installation of a workspace, or of one installer in it."""
        if is_enterprise_install or team_id is None:
            team_id = None
        with self._session_factory() as session:
            query = (
                select(m.SlackInstallation)
                .where(*self._key(enterprise_id, team_id))
                .where(m.SlackInstallation.installer_user_id.is_not(None))
            )
            if user_id is not None:
                query = query.where(m.SlackInstallation.installer_user_id == user_id)
            row = session.scalars(query.order_by(*_NEWEST_FIRST).limit(1)).first()
            if row is None or row.installer_user_id is None:
                return None
            installation = self._installation(row, row.installer_user_id)
            if user_id is not None or installation.bot_token is None:
                # As slack_sdk does: an installer's row may hold an older bot token than
                # the workspace's latest one (bolt-python#664).
                bot_row = self._latest_bot_row(session, enterprise_id, team_id)
                if bot_row is not None and bot_row.id != row.id:
                    latest = self._bot(bot_row)
                    if latest.bot_token != installation.bot_token:
                        installation.bot_id = latest.bot_id
                        installation.bot_user_id = latest.bot_user_id
                        installation.bot_token = latest.bot_token
                        installation.bot_scopes = latest.bot_scopes
                        installation.bot_refresh_token = latest.bot_refresh_token
                        installation.bot_token_expires_at = latest.bot_token_expires_at
            return installation

    def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Erase the bot tokens of a workspace (its bot token was revoked)."""
        table = m.SlackInstallation
        with _transaction(self._session_factory) as session:
            session.execute(
                delete(table)
                .where(*self._key(enterprise_id, team_id))
                .where(table.installer_user_id.is_(None))
            )
            session.execute(
                update(table)
                .where(*self._key(enterprise_id, team_id))
                .values(
                    bot_id=None,
                    bot_user_id=None,
                    bot_scopes=[],
                    bot_token_encrypted=None,
                    bot_refresh_token_encrypted=None,
                    bot_token_expires_at=None,
                )
            )
        log.info("slack bot deleted", extra={"enterprise_id": enterprise_id, "team_id": team_id})

    def delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        """Delete the installations of a workspace, or of one installer; keep its bot."""
        table = m.SlackInstallation
        with _transaction(self._session_factory) as session:
            installs = (
                select(table.id)
                .where(*self._key(enterprise_id, team_id))
                .where(
                    table.installer_user_id.is_not(None)
                    if user_id is None
                    else table.installer_user_id == user_id
                )
            )
            ids = list(session.scalars(installs))
            if ids:
                session.execute(
                    delete(table).where(table.id.in_(ids), table.bot_token_encrypted.is_(None))
                )
                session.execute(
                    update(table)
                    .where(table.id.in_(ids))
                    .values(
                        installer_user_id=None,
                        token_type=None,
                        user_scopes=[],
                        user_token_encrypted=None,
                        user_refresh_token_encrypted=None,
                        user_token_expires_at=None,
                        incoming_webhook_url_encrypted=None,
                        incoming_webhook_channel=None,
                        incoming_webhook_channel_id=None,
                        incoming_webhook_configuration_url=None,
                    )
                )
        log.info(
            "slack installation deleted",
            extra={"enterprise_id": enterprise_id, "team_id": team_id, "user_id": user_id},
        )

    def delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Delete every installation and bot of a workspace (the app was uninstalled)."""
        with _transaction(self._session_factory) as session:
            session.execute(delete(m.SlackInstallation).where(*self._key(enterprise_id, team_id)))
        log.info(
            "slack installations deleted",
            extra={"enterprise_id": enterprise_id, "team_id": team_id},
        )

    # ---- rows -------------------------------------------------------------------------------

    def _key(self, enterprise_id: str | None, team_id: str | None) -> list[ColumnElement[bool]]:
        table = m.SlackInstallation
        return [
            table.client_id == self.client_id,
            _same(table.enterprise_id, enterprise_id),
            _same(table.team_id, team_id),
        ]

    def _row_installed_at(
        self,
        session: Session,
        enterprise_id: str | None,
        team_id: str | None,
        installed_at: datetime,
    ) -> m.SlackInstallation | None:
        query = (
            select(m.SlackInstallation)
            .where(*self._key(enterprise_id, team_id))
            .where(m.SlackInstallation.installed_at == installed_at)
        )
        return session.scalars(query.order_by(*_NEWEST_FIRST).limit(1)).first()

    def _latest_bot_row(
        self, session: Session, enterprise_id: str | None, team_id: str | None
    ) -> m.SlackInstallation | None:
        query = (
            select(m.SlackInstallation)
            .where(*self._key(enterprise_id, team_id))
            .where(m.SlackInstallation.bot_token_encrypted.is_not(None))
        )
        return session.scalars(query.order_by(*_NEWEST_FIRST).limit(1)).first()

    def _org_of(self, session: Session, team_id: str | None, team_name: str | None) -> int | None:
        # An org-wide install has no team: no single organization owns it.
        return None if team_id is None else bind_installation_to_org(session, team_id, team_name)

    def _write_bot(self, row: m.SlackInstallation, bot: Bot) -> None:
        row.app_id = bot.app_id
        row.enterprise_id = bot.enterprise_id
        row.enterprise_name = bot.enterprise_name
        row.team_id = bot.team_id
        row.team_name = bot.team_name
        row.is_enterprise_install = bool(bot.is_enterprise_install)
        row.bot_id = bot.bot_id
        row.bot_user_id = bot.bot_user_id
        row.bot_scopes = list(bot.bot_scopes or [])
        row.bot_token_encrypted = self._seal(bot.bot_token)
        row.bot_refresh_token_encrypted = self._seal(bot.bot_refresh_token)
        row.bot_token_expires_at = _at_or_none(bot.bot_token_expires_at)

    def _bot(self, row: m.SlackInstallation) -> Bot:
        bot_token = self._open(row.bot_token_encrypted)
        if bot_token is None:
            raise ValueError(f"slack installation {row.id} holds no bot token")
        return Bot(
            app_id=row.app_id,
            enterprise_id=row.enterprise_id,
            enterprise_name=row.enterprise_name,
            team_id=row.team_id,
            team_name=row.team_name,
            bot_token=bot_token,
            # Bolt always records both (auth.test gives the bot id); slack_sdk's own stores
            # pass a missing one through as None too.
            bot_id=row.bot_id,  # type: ignore[arg-type]
            bot_user_id=row.bot_user_id,  # type: ignore[arg-type]
            bot_scopes=list(row.bot_scopes),
            bot_refresh_token=self._open(row.bot_refresh_token_encrypted),
            bot_token_expires_at=row.bot_token_expires_at,
            is_enterprise_install=row.is_enterprise_install,
            installed_at=row.installed_at,
        )

    def _installation(self, row: m.SlackInstallation, installer_user_id: str) -> Installation:
        return Installation(
            app_id=row.app_id,
            enterprise_id=row.enterprise_id,
            enterprise_name=row.enterprise_name,
            enterprise_url=row.enterprise_url,
            team_id=row.team_id,
            team_name=row.team_name,
            bot_token=self._open(row.bot_token_encrypted),
            bot_id=row.bot_id,
            bot_user_id=row.bot_user_id,
            bot_scopes=list(row.bot_scopes),
            bot_refresh_token=self._open(row.bot_refresh_token_encrypted),
            bot_token_expires_at=row.bot_token_expires_at,
            user_id=installer_user_id,
            user_token=self._open(row.user_token_encrypted),
            user_scopes=list(row.user_scopes),
            user_refresh_token=self._open(row.user_refresh_token_encrypted),
            user_token_expires_at=row.user_token_expires_at,
            incoming_webhook_url=self._open(row.incoming_webhook_url_encrypted),
            incoming_webhook_channel=row.incoming_webhook_channel,
            incoming_webhook_channel_id=row.incoming_webhook_channel_id,
            incoming_webhook_configuration_url=row.incoming_webhook_configuration_url,
            is_enterprise_install=row.is_enterprise_install,
            token_type=row.token_type,
            installed_at=row.installed_at,
        )

    def _seal(self, secret: str | None) -> bytes | None:
        return None if secret is None else self._box.encrypt_bytes(secret)

    def _open(self, sealed: bytes | None) -> str | None:
        return None if sealed is None else self._box.decrypt_bytes(sealed)


# --- OAuth state store --------------------------------------------------------------------


class DbOAuthStateStore(OAuthStateStore):
    """slack_sdk's OAuthStateStore on `slack_oauth_states`: each state is good for one callback.

    A state is consumed by deleting it, so two callbacks racing with the same state (a
    replay, two replicas) cannot both succeed; an expired state is refused (and deleted).
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        expiration_seconds: int = 600,
        clock: Clock | None = None,
    ) -> None:
        self._session_factory = session_factory
        self.expiration_seconds = expiration_seconds
        self._clock = clock or SystemClock()

    @property
    def logger(self) -> logging.Logger:
        """Return the logger slack_sdk and Bolt expect a store to have."""
        return log

    def issue(self, *args: Any, org_id: int | None = None, **kwargs: Any) -> str:
        """Issue a new random state, valid for `expiration_seconds`.

        `org_id` is the organization an install link binds the install to; the callback
        reads it back with `org_of_state`.
        """
        state = secrets.token_urlsafe(32)
        now = self._clock.now()
        with _transaction(self._session_factory) as session:
            # Housekeeping: states of installs that were never completed.
            session.execute(delete(m.SlackOAuthState).where(m.SlackOAuthState.expire_at <= now))
            session.add(
                m.SlackOAuthState(
                    state=state,
                    org_id=org_id,
                    expire_at=now + timedelta(seconds=self.expiration_seconds),
                )
            )
        return state

    def org_of_state(self, state: str) -> int | None:
        """Return the organization a state was issued for (an install link's), if any.

        Only a read: `consume` still decides whether the state is good, once.
        """
        with self._session_factory() as session:
            return session.scalar(
                select(m.SlackOAuthState.org_id).where(m.SlackOAuthState.state == state)
            )

    def consume(self, state: str) -> bool:
        """Return True if `state` was issued and has not expired; it can be consumed once."""
        with _transaction(self._session_factory) as session:
            expire_at = session.scalars(
                delete(m.SlackOAuthState)
                .where(m.SlackOAuthState.state == state)
                .returning(m.SlackOAuthState.expire_at)
            ).one_or_none()
        if expire_at is None:
            log.warning("unknown or already used oauth state refused")
            return False
        if expire_at <= self._clock.now():
            log.warning("expired oauth state refused")
            return False
        return True


# --- helpers ------------------------------------------------------------------------------


@contextmanager
def _transaction(session_factory: SessionFactory) -> Iterator[Session]:
    with session_factory() as session, session.begin():
        yield session


def _same(column: InstrumentedAttribute[str | None], value: str | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _at_or_none(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else _at(timestamp)
