from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exoplane.models.base import Base, BigIntId, UTCDateTime, utcnow


class CallEvent(Base):
    """One step of a call's timeline, keyed by Exotel's CallSid.

    Webhook deliveries and attempts are not copied here: the timeline reads them from the
    delivery log, whose events carry the CallSid too.
    """

    __tablename__ = "call_events"
    __table_args__ = (
        Index("ix_call_events_call", "app_id", "call_sid", "id"),
        # GET /api/v1/stats: the streams started, and their first bot audio, over time.
        Index("ix_call_events_kind_at", "kind", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # None for a voice-bot stream: those belong to the platform's operators, not to an app.
    app_id: Mapped[str | None] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    call_sid: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    # A small JSON object; what it holds depends on the kind (docs/call-timeline.md).
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
