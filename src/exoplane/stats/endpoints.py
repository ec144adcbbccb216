"""``/api/v1/stats``: numbers for charts, for operators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from exoplane.db import Session
from exoplane.responses import JSONBytesResponse
from exoplane.stats import service
from exoplane.stats.schemas import StatsView, stats_view
from exoplane.voicebot.auth import AdminAuth

router = APIRouter(prefix="/api/v1", tags=["stats"])


@router.get("/stats", response_model=StatsView)
async def get_stats(
    session: Session,
    _operator: AdminAuth,
    since: Annotated[
        datetime | None,
        Query(
            description="Start of the first bucket (ISO 8601; UTC if no offset); "
            "default: 24 hours before 'until'"
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(description="End of the range; default: the end of the current bucket"),
    ] = None,
    bucket: Annotated[
        Literal["minute", "hour", "day"], Query(description="Width of each bucket")
    ] = "hour",
) -> Response:
    """Per time bucket: webhook deliveries by outcome with latency p50/p99, calls by
    outcome, and voice-bot streams with time to first bot audio p50/p99."""
    chosen = service.window(since, until, bucket)
    return JSONBytesResponse(stats_view(chosen, await service.stats(session, chosen)))
