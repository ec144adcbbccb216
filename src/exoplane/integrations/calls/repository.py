"""All SQL of calls."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from exoplane.db import Reader, insert_missing
from exoplane.models import (
    App,
    AppSettings,
    Call,
    CallEvent,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
)
from exoplane.models.base import Base


async def users_with_virtual_number(
    session: AsyncSession, app_id: str, virtual_number: str
) -> Sequence[User]:
    query = (
        select(User)
        .where(User.app_id == app_id, User.virtual_number == virtual_number)
        .order_by(User.id)
    )
    return (await session.scalars(query)).all()


async def get_call(session: AsyncSession, call_id: str) -> Call | None:
    return await session.get(Call, call_id)


def add_call(session: AsyncSession, call: Call) -> None:
    session.add(call)


async def settle_placed_call(
    session: AsyncSession,
    call_id: str,
    *,
    call_sid: str | None,
    status: str,
    while_status: str,
    at: datetime,
) -> None:
    """Record how placing a call went: its CallSid (when given), and ``status`` while the
    call's status is still ``while_status``.

    One statement, so a StatusCallback committed meanwhile is seen and kept: it reported
    on the call after Exotel accepted it, so it knows better.
    """
    still = Call.status == while_status
    values: dict[Any, Any] = {
        Call.status: case((still, status), else_=Call.status),
        Call.updated_at: case((still, at), else_=Call.updated_at),
    }
    if call_sid is not None:
        values[Call.call_sid] = call_sid
    statement = update(Call).where(Call.id == call_id).values(values)
    await session.execute(statement.execution_options(synchronize_session=False))


# --- what a Passthru hook needs, in as few statements as it can be read and written ------


@dataclass(frozen=True, slots=True)
class HookContext:
    """An app's webhook targets and signing secrets (encrypted), with the first user owning
    the called number (if any)."""

    app_id: str
    popup_url: str | None
    missed_call_url: str | None
    callback_url: str | None
    recording_url: str | None
    webhook_secret_enc: str
    previous_webhook_secret_enc: str | None
    previous_webhook_secret_expires_at: datetime | None
    agent_user_id: str | None
    agent_sip_username: str | None


_SETTINGS_COLUMNS = (
    AppSettings.app_id,
    AppSettings.popup_url,
    AppSettings.missed_call_url,
    AppSettings.callback_url,
    AppSettings.recording_url,
    AppSettings.webhook_secret_enc,
    AppSettings.previous_webhook_secret_enc,
    AppSettings.previous_webhook_secret_expires_at,
)
_HOOK_CONTEXTS = (
    select(*_SETTINGS_COLUMNS, User.virtual_number, User.user_id, User.sip_username)
    .outerjoin(
        User,
        and_(
            User.app_id == AppSettings.app_id,
            User.virtual_number.in_(bindparam("numbers", expanding=True)),
        ),
    )
    .where(AppSettings.app_id.in_(bindparam("app_ids", expanding=True)))
    .order_by(User.id)
)


async def hook_contexts(
    session: AsyncSession, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], HookContext]:
    """The context of each ``(app_id, virtual number)`` in one statement; an app without a
    settings row (it predates settings, or was deleted) has none."""
    wanted = set(wanted)
    params = {
        "app_ids": sorted({app_id for app_id, _ in wanted}),
        "numbers": sorted({number for _, number in wanted}),
    }
    connection = await session.connection()
    settings: dict[str, tuple[Any, ...]] = {}
    agents: dict[tuple[str, str], tuple[str, str]] = {}
    for row in await connection.execute(_HOOK_CONTEXTS, params):
        values: tuple[Any, ...] = tuple(row)
        app_id, (number, user_id, sip_username) = values[0], values[-3:]
        settings.setdefault(app_id, values[: len(_SETTINGS_COLUMNS)])
        if user_id is not None:
            agents.setdefault((app_id, number), (user_id, sip_username))  # the first by id
    nobody = (None, None)
    return {
        (app_id, number): HookContext(*settings[app_id], *agents.get((app_id, number), nobody))
        for app_id, number in wanted
        if app_id in settings
    }


@dataclass(frozen=True, slots=True)
class CallRecord:
    id: str
    call_sid: str
    from_number: str
    to_number: str


_CALLS = Base.metadata.tables[Call.__tablename__]


async def add_calls_once(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> dict[tuple[str, str], CallRecord]:
    """Each app's call with each CallSid: inserted from its row unless it exists (in the
    table, or earlier in ``rows``), then read back, keyed by ``(app_id, call_sid)``.

    A report racing another about the same new call waits for the other's transaction and
    then reads the call it wrote, rather than failing on the unique key.
    """
    connection = await session.connection()
    ids = await insert_missing(connection, _CALLS, ("app_id", "call_sid"), rows)
    inserted = [row for row in rows if row["id"] in ids]
    calls = {
        (row["app_id"], row["call_sid"]): CallRecord(
            row["id"], row["call_sid"], row["from_number"], row["to_number"]
        )
        for row in inserted
    }
    # The rest were there already (or earlier in ``rows``): read them as they are stored.
    missing = sorted({(row["app_id"], row["call_sid"]) for row in rows} - calls.keys())
    if missing:
        stored = select(
            Call.app_id, Call.id, Call.call_sid, Call.from_number, Call.to_number
        ).where(tuple_(Call.app_id, Call.call_sid).in_(missing))
        for app_id, call_id, call_sid, from_number, to_number in await connection.execute(stored):
            # Matched on its CallSid, so it has one.
            calls[(app_id, call_sid)] = CallRecord(call_id, str(call_sid), from_number, to_number)
    return calls


async def update_calls(session: AsyncSession, changes: Sequence[dict[str, Any]]) -> None:
    """Apply each ``{"id": ..., column: value, ...}``; rows changing the same columns go in
    one statement."""
    connection = await session.connection()
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in changes:
        columns = tuple(sorted(key for key in change if key != "id"))
        by_columns.setdefault(columns, []).append(
            {"call_id": change["id"], **{f"new_{column}": change[column] for column in columns}}
        )
    for columns, rows in by_columns.items():
        statement = (
            update(_CALLS)
            .where(_CALLS.c.id == bindparam("call_id"))
            .values({column: bindparam(f"new_{column}") for column in columns})
        )
        await connection.execute(statement, rows)


_CALLER = (
    select(
        App.customer_id,
        App.exotel_account_sid,
        App.exotel_api_key_enc,
        App.exotel_api_token_enc,
        App.exotel_domain,
        User.phone_enabled,
        User.sip_enabled,
        User.phone_number,
        User.sip_username,
        User.virtual_number,
    )
    .join(App, App.id == User.app_id)
    .where(User.app_id == bindparam("app_id"), User.user_id == bindparam("user_id"))
)


@dataclass(frozen=True, slots=True)
class Caller:
    """An agent about to place a call, with their app's Exotel account."""

    customer_id: str
    account_sid: str
    api_key_enc: str
    api_token_enc: str
    exotel_domain: str
    phone_enabled: bool
    sip_enabled: bool
    phone_number: str | None
    sip_username: str
    virtual_number: str | None


async def caller(reader: Reader, app_id: str, user_id: str) -> Caller | None:
    """Read outside any transaction: Exotel is called next, and no lock may wait on it."""
    row = await reader.first(_CALLER, {"app_id": app_id, "user_id": user_id})
    return Caller(*row) if row else None


# --- the call log and each call's timeline --------------------------------------------------

_ADD_CALL_EVENTS = insert(Base.metadata.tables[CallEvent.__tablename__])


async def add_call_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Append timeline entries, all in one executemany (on the table: it is the hook path)."""
    if rows:
        connection = await session.connection()
        await connection.execute(_ADD_CALL_EVENTS, list(rows))


def _keyed(call_sid: str) -> Any:
    """The call with this CallSid, or the one without a CallSid that has this id (Exotel
    refused it: it is listed under exoplane's own id)."""
    return or_(Call.call_sid == call_sid, and_(Call.call_sid.is_(None), Call.id == call_sid))


async def find_call(session: AsyncSession, app_id: str, call_sid: str) -> Call | None:
    query = select(Call).where(Call.app_id == app_id, _keyed(call_sid))
    return await session.scalar(query)


async def call_events(
    session: AsyncSession, app_id: str, keys: Sequence[str]
) -> Sequence[CallEvent]:
    """The steps recorded under any of ``keys`` (a CallSid, exoplane's id of the call)."""
    query = (
        select(CallEvent)
        .where(CallEvent.app_id == app_id, CallEvent.call_sid.in_(keys))
        .order_by(CallEvent.id)
    )
    return (await session.scalars(query)).all()


async def call_webhooks(
    session: AsyncSession, app_id: str, call_sid: str
) -> tuple[Sequence[WebhookDelivery], Sequence[WebhookAttempt]]:
    """The deliveries of the call's webhook events, and every attempt of them."""
    deliveries = (
        await session.scalars(
            select(WebhookDelivery)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookEvent.app_id == app_id, WebhookEvent.call_sid == call_sid)
            .order_by(WebhookDelivery.id)
        )
    ).all()
    if not deliveries:
        return deliveries, []
    attempts = (
        await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_([delivery.id for delivery in deliveries]))
            .order_by(WebhookAttempt.id)
        )
    ).all()
    return deliveries, attempts


async def list_calls(
    session: AsyncSession,
    app_id: str,
    *,
    statuses: Sequence[str] | None,
    direction: str | None,
    number: str | None,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Call]:
    """The app's calls, newest first, from after the ``after``
    position (start time, id) on."""
    # A call without a CallSid is listed once it has failed (Exotel refused it); until then
    # it is being placed, and is listed once Exotel has answered.
    known = or_(Call.call_sid.is_not(None), Call.status == "failed")
    query = select(Call).where(Call.app_id == app_id, known)
    if statuses is not None:
        query = query.where(Call.status.in_(statuses))
    if direction is not None:
        query = query.where(Call.direction == direction)
    if number is not None:
        query = query.where(or_(Call.from_number == number, Call.to_number == number))
    if since is not None:
        query = query.where(Call.created_at >= since)
    if until is not None:
        query = query.where(Call.created_at < until)
    if after is not None:
        started, call_id = after
        query = query.where(
            or_(Call.created_at < started, and_(Call.created_at == started, Call.id < call_id))
        )
    query = query.order_by(Call.created_at.desc(), Call.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


# --- the voice-bot platform's calls (test calls and bot streams), which belong to no app ---

# The first step of each such call.
PLATFORM_OPENINGS = ("test_call_placed", "test_call_refused", "stream_start")
# A test call's first step: placed, or refused by Exotel (then it is its only step).
TEST_CALL_OPENINGS = ("test_call_placed", "test_call_refused")


async def platform_call_events(session: AsyncSession, call_sid: str) -> Sequence[CallEvent]:
    query = (
        select(CallEvent)
        .where(CallEvent.app_id.is_(None), CallEvent.call_sid == call_sid)
        .order_by(CallEvent.id)
    )
    return (await session.scalars(query)).all()


def _detail(session: AsyncSession, step: Any, key: str) -> Any:
    """One field of a step's JSON ``detail`` (stored as text), in SQL."""
    postgres = session.get_bind().dialect.name == "postgresql"
    detail = cast(step.detail, JSON) if postgres else type_coerce(step.detail, JSON)
    return detail[key]


async def list_platform_openings(
    session: AsyncSession,
    *,
    status: str | None = None,
    direction: str | None = None,
    number: str | None = None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> Sequence[CallEvent]:
    """The first step of each platform call, newest first (a test call in stream mode
    has a ``stream_start`` after its ``test_call_placed``: it is listed once).

    ``status`` is the call's as ``_platform_call`` tells it: ``completed`` or ``failed``
    once its stream has closed (normally or not), ``failed`` when Exotel refused the test
    call, else what the first step says
    (``in-progress`` when it says nothing). ``direction``: a test call is ``outbound``,
    a stream without one ``inbound``.
    """
    earlier = aliased(CallEvent)
    opened_before = exists().where(
        earlier.app_id.is_(None),
        earlier.call_sid == CallEvent.call_sid,
        earlier.kind.in_(PLATFORM_OPENINGS),
        earlier.id < CallEvent.id,
    )
    query = select(CallEvent).where(
        CallEvent.app_id.is_(None), CallEvent.kind.in_(PLATFORM_OPENINGS), ~opened_before
    )
    if direction == "outbound":
        query = query.where(CallEvent.kind.in_(TEST_CALL_OPENINGS))
    elif direction == "inbound":
        query = query.where(CallEvent.kind == "stream_start")
    if number is not None:
        query = query.where(
            or_(
                _detail(session, CallEvent, "from").as_string() == number,
                _detail(session, CallEvent, "to").as_string() == number,
            )
        )
    if status is not None:
        closed = aliased(CallEvent)
        closing = [
            closed.app_id.is_(None),
            closed.call_sid == CallEvent.call_sid,
            closed.kind == "stream_closed",
        ]
        code = _detail(session, closed, "code").as_integer()
        refused = CallEvent.kind == "test_call_refused"
        if status == "completed":
            query = query.where(exists().where(*closing, code == 1000))
        elif status == "failed":
            broken = exists().where(*closing, or_(code.is_(None), code != 1000))
            query = query.where(or_(refused, broken))
        else:
            said = func.coalesce(_detail(session, CallEvent, "status").as_string(), "in-progress")
            query = query.where(~refused, ~exists().where(*closing), said == status)
    if since is not None:
        query = query.where(CallEvent.at >= since)
    if until is not None:
        query = query.where(CallEvent.at < until)
    if before_id is not None:
        query = query.where(CallEvent.id < before_id)
    query = query.order_by(CallEvent.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def platform_steps_of(
    session: AsyncSession, call_sids: Sequence[str], kinds: Sequence[str]
) -> Sequence[CallEvent]:
    """The ``kinds`` steps of these platform calls, oldest first."""
    if not call_sids:
        return []
    query = (
        select(CallEvent)
        .where(
            CallEvent.app_id.is_(None),
            CallEvent.call_sid.in_(call_sids),
            CallEvent.kind.in_(kinds),
        )
        .order_by(CallEvent.id)
    )
    return (await session.scalars(query)).all()


# --- following a call as it happens ----------------------------------------------------------


def _of_call(app_id: str | None, call_sid: str) -> Any:
    app = CallEvent.app_id.is_(None) if app_id is None else CallEvent.app_id == app_id
    return and_(app, CallEvent.call_sid == call_sid)


async def call_events_after(
    session: AsyncSession, app_id: str | None, call_sid: str, after_id: int, limit: int
) -> Sequence[CallEvent]:
    """The call's steps recorded after ``after_id``, oldest first (``app_id`` None: a call of
    the voice-bot platform)."""
    query = (
        select(CallEvent)
        .where(_of_call(app_id, call_sid), CallEvent.id > after_id)
        .order_by(CallEvent.id)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def call_status(session: AsyncSession, app_id: str, call_sid: str) -> str | None:
    query = select(Call.status).where(Call.app_id == app_id, _keyed(call_sid))
    status: str | None = await session.scalar(query)
    return status


async def platform_call_exists(session: AsyncSession, call_sid: str) -> bool:
    query = select(CallEvent.id).where(
        _of_call(None, call_sid), CallEvent.kind.in_(PLATFORM_OPENINGS)
    )
    return await session.scalar(query.limit(1)) is not None


async def platform_call_milestones(session: AsyncSession, call_sid: str) -> dict[str, datetime]:
    """When the call's test call was placed, its stream started and closed, of those
    recorded (by kind: ``test_call_placed``, ``stream_start``, ``stream_closed``)."""
    query = (
        select(CallEvent.kind, func.min(CallEvent.at))
        .where(_of_call(None, call_sid), CallEvent.kind.in_([*PLATFORM_OPENINGS, "stream_closed"]))
        .group_by(CallEvent.kind)
    )
    return {kind: at for kind, at in await session.execute(query)}


async def call_attempts_after(
    session: AsyncSession, app_id: str, call_sid: str, after_id: int, limit: int
) -> Sequence[WebhookAttempt]:
    """Attempts of the call's webhooks after ``after_id``, oldest first."""
    query = (
        select(WebhookAttempt)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookEvent.app_id == app_id,
            WebhookEvent.call_sid == call_sid,
            WebhookAttempt.id > after_id,
        )
        .order_by(WebhookAttempt.id)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def call_final_attempts_after(
    session: AsyncSession, app_id: str, call_sid: str, after_id: int, limit: int
) -> Sequence[tuple[WebhookAttempt, WebhookDelivery]]:
    """The attempts after ``after_id`` that settled a delivery of the call's webhooks (it
    succeeded, or was given up), each with its delivery, oldest first. An attempt and the
    delivery's new state are written together, so they are seen together."""
    query = (
        select(WebhookAttempt, WebhookDelivery)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookEvent.app_id == app_id,
            WebhookEvent.call_sid == call_sid,
            WebhookAttempt.id > after_id,
            WebhookDelivery.status != "pending",
            WebhookAttempt.number == WebhookDelivery.attempts,
        )
        .order_by(WebhookAttempt.id)
        .limit(limit)
    )
    return [(attempt, delivery) for attempt, delivery in await session.execute(query)]


async def call_deliveries(
    session: AsyncSession, app_id: str, call_sid: str
) -> Sequence[WebhookDelivery]:
    """Every delivery of the call's webhooks, oldest first."""
    query = (
        select(WebhookDelivery)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookEvent.app_id == app_id, WebhookEvent.call_sid == call_sid)
        .order_by(WebhookDelivery.id)
    )
    return (await session.scalars(query)).all()
