from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from exoplane.models.base import Base, UTCDateTime, utcnow


class PortalLink(Base):
    """A link that shows one app's calls, deliveries, flow URLs and settings to whoever
    holds it, until it expires or is revoked. Only a hash of its token is kept, so a copy of
    this table opens no portal."""

    __tablename__ = "portal_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The super_admin who minted it (their email, kept if the operator is deleted).
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
