from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from exoplane.models.base import Base, UTCDateTime, utcnow


class ConsoleSession(Base):
    """An operator signed in to the console. Only a hash of the cookie's token is kept, so a
    copy of this table signs nobody in; deleting the row signs the browser out everywhere."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[str] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Refreshed at most every few minutes while the operator is active (not on every page).
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
