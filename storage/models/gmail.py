"""Tables of connected Gmail mailboxes and of Gmail consents in progress."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, created, json_list, org_fk, pk
from storage.types import BigId, UTCDateTime


class GmailAccount(Base):
    __tablename__ = "gmail_accounts"
    __table_args__ = (UniqueConstraint("org_id", "email"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="connected")
    scopes: Mapped[list[str]] = json_list()
    refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    history_id: Mapped[int | None] = mapped_column(BigId)
    watch_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    daily_send_cap: Mapped[int] = mapped_column(
        Integer, nullable=False, default=400, server_default="400"
    )
    min_send_interval_seconds: Mapped[int] = mapped_column(
        Integer, nullable=False, default=5, server_default="5"
    )
    # The earliest moment the next send may start, and until when a send in flight holds
    # the mailbox: senders reserve both under the row's lock, so the mailbox keeps its
    # spacing and sends one at a time whatever the number of workers.
    next_send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sending_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disconnected_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created()
    updated_at: Mapped[datetime] = created()


class GmailOAuthState(Base):
    """One Gmail consent in progress: the user it is for and its PKCE verifier; used once.

    The `state` parameter sent to Google is a signed token naming `nonce`; the callback
    consumes the row by compare-and-set on `used_at`, so a replayed callback is refused.
    """

    __tablename__ = "gmail_oauth_states"
    __table_args__ = (Index("ix_gmail_oauth_states_expires_at", "expires_at"),)

    id: Mapped[int] = pk()
    org_id: Mapped[int] = org_fk()
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    nonce: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    code_verifier_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    redirect_uri: Mapped[str] = mapped_column(String(500), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = created()
