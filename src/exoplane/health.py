"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from exoplane.db import ping
from exoplane.responses import JSONBytesResponse
from exoplane.state import State

router = APIRouter(tags=["health"])

# Where a person who opens the server's address in a browser goes next.
INDEX = {
    "name": "exoplane",
    "docs": "/docs",
    "redoc": "/redoc",
    "openapi": "/openapi.json",
    "health": "/healthz",
    "ready": "/readyz",
}


@router.get("/", include_in_schema=False)
async def index() -> Response:
    """Links to the API documentation and the probes."""
    return JSONBytesResponse(INDEX)


class Live(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
    # Where rate limits are counted: "redis", or "local" while Redis is unavailable.
    rate_limits: Literal["redis", "local"] | None = None


@router.get("/healthz", response_model=Live)
async def healthz() -> Response:
    """The process is up and serving."""
    return JSONBytesResponse({"status": "ok"})


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(state: State) -> Response:
    """The database (and Redis, when configured) answer, within the readiness timeout."""
    timeout = state.settings.readiness_timeout_seconds
    checks: dict[str, Awaitable[str]] = {"database": _check(_database(state), timeout)}
    if state.settings.redis_url:
        checks["redis"] = _check(_redis(state), timeout)
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    ready = all(value == "ok" for value in results.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": results}
    if state.settings.redis_url:
        body["rate_limits"] = state.rate_limiter.where
    return JSONBytesResponse(body, status_code=200 if ready else 503)


async def _database(state: State) -> bool:
    await ping(state.engine)
    return True


async def _redis(state: State) -> bool:
    return await state.rate_limiter.check_storage()


async def _check(probe: Awaitable[bool], timeout: float) -> str:
    """``"ok"``, or why not: a probe that does not answer in time counts as unavailable."""
    try:
        async with asyncio.timeout(timeout):
            return "ok" if await probe else "unavailable"
    except TimeoutError:
        return f"unavailable: no answer within {timeout:g} s"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
