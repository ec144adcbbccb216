from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exoplane.models.base import Base, UTCDateTime, utcnow


class AppSettings(Base):
    """An app's webhook targets and call options (seed 02), one row per app."""

    __tablename__ = "app_settings"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    popup_url: Mapped[str | None] = mapped_column(String(2048))
    missed_call_url: Mapped[str | None] = mapped_column(String(2048))
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    recording_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    recording_url: Mapped[str | None] = mapped_column(String(2048))
    streaming_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    streaming_url: Mapped[str | None] = mapped_column(String(2048))
    # Exotel-compatible keys with no resource-style field (incomingCallHangup, playback, ...).
    extra_json: Mapped[str] = mapped_column(Text, default="{}")
    # The Standard Webhooks signing secret; the previous one signs too until it expires.
    webhook_secret_enc: Mapped[str] = mapped_column(Text)
    previous_webhook_secret_enc: Mapped[str | None] = mapped_column(Text)
    previous_webhook_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped on every change; the ETag, so stale writes can be refused.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Every UPDATE checks and bumps the version: a concurrent change makes it fail.
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
