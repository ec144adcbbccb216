"""Running a keyed create once.

The key row is inserted in the same transaction as the work it guards, under a savepoint, so
the stored response exists exactly when the work was committed. Two concurrent requests with
one key: the second waits on the unique index (PostgreSQL) or the write lock (SQLite), then
finds the first one's committed answer and replays it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.db import unit_of_work
from exoplane.errors import BadRequest, Conflict
from exoplane.idempotency import repository
from exoplane.models import IdempotencyKey
from exoplane.models.base import utcnow
from exoplane.security import Vault

KEY_LIFETIME = timedelta(hours=24)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    data: Any
    replayed: bool


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces",
            code="invalid_idempotency_key",
            field="Idempotency-Key",
        )
    return key


def _replay(row: IdempotencyKey, request_hash: str, vault: Vault) -> Outcome:
    if row.status_code == 0:
        raise _in_progress()
    if row.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used with a different request; "
            "use a new key for a new request",
            code="idempotency_key_reused",
        )
    return Outcome(row.status_code, json.loads(vault.decrypt(row.response_enc)), replayed=True)


async def _reserve(
    session: AsyncSession, vault: Vault, principal: str, key: str, request_hash: str
) -> IdempotencyKey | Outcome:
    """The key's row, inserted as "in progress"; or, if the key has an answer, its replay."""
    existing = await repository.find_live(session, principal, key, utcnow())
    if existing is not None:
        return _replay(existing, request_hash, vault)
    now = utcnow()
    row = IdempotencyKey(
        principal=principal,
        key=key,
        request_hash=request_hash,
        status_code=0,
        response_enc="",
        created_at=now,
        expires_at=now + KEY_LIFETIME,
    )
    try:
        async with session.begin_nested():
            await repository.delete_expired(session, principal, key, now)
            session.add(row)
            await session.flush()
    except IntegrityError:
        winner = await repository.find_live(session, principal, key, utcnow())
        if winner is None:
            raise _in_progress() from None
        return _replay(winner, request_hash, vault)
    return row


async def run_once(
    session: AsyncSession,
    vault: Vault,
    *,
    principal: str,
    key: str | None,
    request_hash: str,
    action: Callable[[], Awaitable[tuple[int, Any]]],
) -> Outcome:
    """Run ``action`` unless ``key`` already has an answer for this principal; then replay it.

    The key is reserved in the caller's transaction, so its answer is stored exactly when
    the work it guards is committed.
    """
    if key is None:
        status, data = await action()
        return Outcome(status, data, replayed=False)
    reserved = await _reserve(session, vault, principal, check_key(key), request_hash)
    if isinstance(reserved, Outcome):
        return reserved
    status, data = await action()
    reserved.status_code = status
    reserved.response_enc = vault.encrypt(json.dumps(data))
    await session.flush()
    return Outcome(status, data, replayed=False)


def _in_progress() -> Conflict:
    return Conflict(
        "A request with this Idempotency-Key is still in progress; retry shortly",
        code="idempotency_key_in_progress",
    )


async def run_once_detached(
    sessions: async_sessionmaker[AsyncSession],
    vault: Vault,
    *,
    principal: str,
    key: str | None,
    request_hash: str,
    action: Callable[[], Awaitable[tuple[int, Any]]],
) -> Outcome:
    """``run_once`` for work that calls out (placing a call): no transaction stays open
    while it runs. The key is reserved and committed first, so a concurrent retry finds it
    taken instead of acting twice; the answer is stored after. If the work fails, the key
    is released so the request can be retried.
    """
    if key is None:
        status, data = await action()
        return Outcome(status, data, replayed=False)
    async with unit_of_work(sessions) as session:
        reserved = await _reserve(session, vault, principal, check_key(key), request_hash)
        if isinstance(reserved, Outcome):
            return reserved
    try:
        status, data = await action()
    except BaseException:
        async with unit_of_work(sessions) as session:
            await repository.delete_by_id(session, reserved.id)
        raise
    async with unit_of_work(sessions) as session:
        await repository.store_answer(session, reserved.id, status, vault.encrypt(json.dumps(data)))
    return Outcome(status, data, replayed=False)
