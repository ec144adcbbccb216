"""What the console's webhook and call pages show beyond the API's answers: a timeline with
times relative to its first step and its milestones picked out, and the charts of the
last 24 hours from the stats service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.console.charts import Chart, call_charts, webhook_charts
from exoplane.console.service import call_ended
from exoplane.errors import BadRequest
from exoplane.integrations.calls import service as calls
from exoplane.integrations.calls.schemas import call_view, platform_call_view
from exoplane.integrations.calls.service import TimelineEntry
from exoplane.responses import resource_time
from exoplane.state import AppState

# The steps a call's page picks out, and the mark each gets.
MILESTONES = {
    "routing_answered": "routing",
    "webhook_outcome": "webhook",
    "first_outbound_media": "first-audio",
    "stream_closed": "close",
    "test_call_refused": "refused",
    "call_refused": "refused",
}


@dataclass(frozen=True, slots=True)
class Step:
    at: str
    after: str  # "+1.234 s" after the first step
    kind: str
    detail: str
    mark: str | None
    tone: str | None  # good or bad, for a webhook's outcome and the close


@dataclass(frozen=True, slots=True)
class Summary:
    routed_to: list[str] | None
    webhooks: list[dict[str, Any]]
    first_bot_audio_ms: int | None
    close_code: int | None
    close_reason: str | None


def _tone(entry: TimelineEntry) -> str | None:
    if entry.kind == "webhook_outcome":
        return "good" if entry.detail.get("status") == "succeeded" else "bad"
    if entry.kind == "stream_closed":
        return "good" if entry.detail.get("code") == 1000 else "bad"
    if entry.kind in ("test_call_refused", "call_refused"):
        return "bad"
    return None


def steps(timeline: Sequence[TimelineEntry]) -> list[Step]:
    first = timeline[0].at if timeline else None
    return [
        Step(
            at=resource_time(entry.at),
            after=f"+{(entry.at - first).total_seconds():.3f} s" if first else "",
            kind=entry.kind,
            detail=orjson.dumps(entry.detail).decode(),
            mark=MILESTONES.get(entry.kind),
            tone=_tone(entry),
        )
        for entry in timeline
    ]


def summary(timeline: Sequence[TimelineEntry]) -> Summary:
    routed: list[str] | None = None
    webhooks: dict[str, dict[str, Any]] = {}
    first_audio = code = None
    reason = None
    for entry in timeline:
        detail = entry.detail
        if entry.kind == "routing_answered":
            numbers = detail.get("destinations") or []
            routed = [str(number) for number in numbers] if isinstance(numbers, list) else []
        elif entry.kind == "webhook_outcome":
            webhooks[str(detail.get("delivery_id"))] = detail
        elif entry.kind == "first_outbound_media":
            first_audio = detail.get("after_start_ms")
        elif entry.kind == "stream_closed":
            code, reason = detail.get("code"), detail.get("reason")
    return Summary(routed, list(webhooks.values()), first_audio, code, reason)


async def webhook_charts_now(session: AsyncSession, state: AppState) -> list[Chart]:
    """Deliveries by outcome and attempt latency, per hour over the last 24 hours."""
    return webhook_charts(await state.recent_stats.last_day(session))


async def call_charts_now(session: AsyncSession, state: AppState) -> list[Chart]:
    """Calls by outcome and time to first bot audio, per hour over the last 24 hours."""
    return call_charts(await state.recent_stats.last_day(session))


def pretty_payload(payload: str) -> str:
    """A webhook's body as sent, indented to read."""
    return orjson.dumps(orjson.loads(payload), option=orjson.OPT_INDENT_2).decode()


# --- the call logs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallLog:
    calls: list[dict[str, Any]]
    next_cursor: str | None


async def call_log(
    session: AsyncSession,
    *,
    app_id: str | None,
    status: str | None,
    direction: str | None,
    number: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> CallLog:
    """An app's calls (the apps' call log), or without an app the voice-bot platform's."""
    if app_id is not None:
        rows, next_cursor = await calls.list_calls(
            session,
            app_id,
            status=status,
            direction=direction,
            number=number,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )
        return CallLog([call_view(row, calls.outcome(row)) for row in rows], next_cursor)
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise BadRequest(
            "Query parameter 'cursor' must be a next_cursor this page gave", field="cursor"
        )
    found, after = await calls.list_platform_calls(
        session,
        status=status,
        direction=direction,
        number=number,
        since=since,
        until=until,
        cursor=int(cursor) if cursor is not None else None,
        limit=limit,
    )
    return CallLog(
        [platform_call_view(row) for row in found], str(after) if after is not None else None
    )


@dataclass(frozen=True, slots=True)
class CallPage:
    app_id: str | None
    call: dict[str, Any]
    timeline: list[TimelineEntry]
    ended: bool


async def call_detail(session: AsyncSession, app_id: str | None, call_sid: str) -> CallPage:
    """One call of an app, or of the voice-bot platform, with its timeline."""
    if app_id is not None:
        found = await calls.call_timeline(session, app_id, call_sid)
        outcome = calls.outcome(found.call)
        view = call_view(found.call, outcome)
        return CallPage(app_id, view, found.timeline, outcome != "ongoing")
    platform, timeline = await calls.platform_call_timeline(session, call_sid)
    return CallPage(None, platform_call_view(platform), timeline, call_ended(platform, timeline))
