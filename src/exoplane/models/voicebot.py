from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exoplane.models.base import Base, UTCDateTime, utcnow


class ExotelIntegration(Base):
    """The platform's Exotel credentials (seed 04); one row, secrets encrypted."""

    __tablename__ = "exotel_integration"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_sid: Mapped[str | None] = mapped_column(String(200))
    api_key_enc: Mapped[str | None] = mapped_column(Text)
    api_token_enc: Mapped[str | None] = mapped_column(Text)
    api_base_url: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Did(Base):
    """An ExoPhone mapped to a voice bot and the Exotel flow that reaches it."""

    __tablename__ = "dids"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    label: Mapped[str | None] = mapped_column(String(200))
    bot_id: Mapped[str | None] = mapped_column(String(64))
    flow_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PlatformSettings(Base):
    """Fleet-wide settings; one row (``core_fleet``)."""

    __tablename__ = "platform_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    core_fleet_json: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
