"""Tables of the Slack app: installations, OAuth states, and the queue of deferred work.

A listener acks a click, command, submission or event at once and leaves its slow part
(Bolt's "lazy" function) as a `SlackDeferredCall` row, in the request's own thread, before
the ack is returned: the request is durable before Slack hears 200, and a worker process,
not the web process, runs the work. A row is deleted when its work ran; a crashed
worker's rows come back when their lease (`not_before`) runs out.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, counter, created, json_list, pk
from storage.types import BigId, UTCDateTime


class SlackInstallation(Base):
    """One OAuth install of the Slack app in a workspace; the latest row of a workspace wins.

    Tokens, and the incoming-webhook URL (a credential too), are stored encrypted by
    `storage.slack_store`. A row without an installer holds a bot only (`save_bot`).
    """

    __tablename__ = "slack_installations"
    __table_args__ = (
        Index(
            "ix_slack_installations_enterprise_team_installed",
            "enterprise_id",
            "team_id",
            "installed_at",
        ),
    )

    id: Mapped[int] = pk()
    # Bound when the install is saved; null for an org-wide (Enterprise Grid) install, which
    # no single workspace, hence no single organization, owns.
    org_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    client_id: Mapped[str] = mapped_column(String(32), nullable=False)
    app_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_name: Mapped[str | None] = mapped_column(String(200))
    enterprise_url: Mapped[str | None] = mapped_column(String(200))
    team_id: Mapped[str | None] = mapped_column(String(32))
    team_name: Mapped[str | None] = mapped_column(String(200))
    is_enterprise_install: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )
    token_type: Mapped[str | None] = mapped_column(String(32))
    installer_user_id: Mapped[str | None] = mapped_column(String(32))
    bot_id: Mapped[str | None] = mapped_column(String(32))
    bot_user_id: Mapped[str | None] = mapped_column(String(32))
    bot_scopes: Mapped[list[str]] = json_list()
    bot_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    bot_refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    bot_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_scopes: Mapped[list[str]] = json_list()
    user_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    user_refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    user_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    incoming_webhook_url_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    incoming_webhook_channel: Mapped[str | None] = mapped_column(String(200))
    incoming_webhook_channel_id: Mapped[str | None] = mapped_column(String(32))
    incoming_webhook_configuration_url: Mapped[str | None] = mapped_column(String(500))
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SlackOAuthState(Base):
    """An OAuth `state` issued by /slack/install, good for one callback before it expires."""

    __tablename__ = "slack_oauth_states"
    __table_args__ = (Index("ix_slack_oauth_states_expire_at", "expire_at"),)

    id: Mapped[int] = pk()
    # Every table carries org_id; a state is issued before any workspace is known, so
    # Bolt's flow leaves it null.
    org_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    state: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    expire_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SlackDeferredCall(Base):
    """One lazy listener call: the signed request's body and the function to run with it."""

    __tablename__ = "slack_deferred_calls"
    __table_args__ = (
        Index(
            "ix_slack_deferred_calls_not_before",
            "not_before",
            postgresql_where=text("not_before IS NOT NULL"),
            sqlite_where=text("not_before IS NOT NULL"),
        ),
    )

    id: Mapped[int] = pk()
    # The workspace's organization; null when the workspace is bound to none (the work
    # then tells the user so).
    org_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    team_id: Mapped[str | None] = mapped_column(String(32))
    function: Mapped[str] = mapped_column(String(100), nullable=False)
    # The request exactly as Slack sent it (already verified by the web process).
    body: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = counter()
    # Pending: when it may run; running: the end of the worker's lease; failed: null.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created()
