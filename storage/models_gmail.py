"""Tables of the Gmail connection that the original schema lacks (imported by storage.models)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, _created, _org_fk, _pk
from storage.types import BigId, UTCDateTime


class GmailOAuthState(Base):
    """One Gmail consent in progress: the user it is for and its PKCE verifier; used once.

    The `state` parameter sent to Google is a signed token naming `nonce`; the callback
    consumes the row by compare-and-set on `used_at`, so a replayed callback is refused.
    """

    __tablename__ = "gmail_oauth_states"
    __table_args__ = (Index("ix_gmail_oauth_states_expires_at", "expires_at"),)

    id: Mapped[int] = _pk()
    org_id: Mapped[int] = _org_fk()
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    nonce: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    code_verifier_encrypted: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    redirect_uri: Mapped[str] = mapped_column(String(500), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created()
