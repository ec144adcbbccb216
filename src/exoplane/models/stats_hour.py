from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exoplane.models.base import Base, UTCDateTime, utcnow


class StatsHour(Base):
    """One hour's counts of one series the charts show (the hour under way included, as
    counted so far), kept by the worker so a view reads the last day in one small query
    instead of counting it.

    ``counts`` is a JSON object of value -> how many (a status, or a whole number of
    milliseconds), counted by each row's value when ``computed_at``."""

    __tablename__ = "stats_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    series: Mapped[str] = mapped_column(String(32), primary_key=True)
    counts: Mapped[str] = mapped_column(Text)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
