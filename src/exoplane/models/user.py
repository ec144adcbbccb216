from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exoplane.models.base import Base, BigIntId, UTCDateTime, utcnow


class User(Base):
    """An agent of an app, with SIP credentials and two devices (phone, sip)."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("app_id", "user_id"),
        UniqueConstraint("app_id", "email"),
    )

    # Also the cursor of Exotel's paginated /usermapping listing.
    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    exotel_user_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone_number: Mapped[str | None] = mapped_column(String(20))
    virtual_number: Mapped[str | None] = mapped_column(String(20), index=True)
    role: Mapped[str] = mapped_column(String(20))
    sip_username: Mapped[str] = mapped_column(String(500))
    sip_secret_enc: Mapped[str] = mapped_column(Text)
    phone_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sip_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    devices_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Fed by SIP registration reports; registered while the report's TTL lasts.
    sip_registered_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sip_last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
