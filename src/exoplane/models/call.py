from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exoplane.models.base import Base, UTCDateTime, utcnow


class Call(Base):
    """A call this system heard of, from Exotel's hooks or placed through it."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("app_id", "call_sid"),
        # GET /api/v1/stats counts calls by start time and status from this index alone.
        Index("ix_calls_started_status", "created_at", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    # Exotel's CallSid; empty (NULL) for a call being placed until Exotel gives it.
    call_sid: Mapped[str | None] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(20))
    from_number: Mapped[str] = mapped_column(String(100))
    to_number: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(30))
    duration: Mapped[int | None] = mapped_column(Integer)
    recording_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
