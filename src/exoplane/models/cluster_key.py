"""The fingerprint of the secret key that every process on this database shares."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from exoplane.models.base import Base, UTCDateTime, utcnow


class ClusterKey(Base):
    """One row, written by the first process that starts on the database."""

    __tablename__ = "cluster_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A one-way derivation of the key (never the key itself): see security.key_fingerprint.
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
