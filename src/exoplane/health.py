"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Literal

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


@router.get("/healthz", response_model=Live)
async def healthz() -> Response:
    """The process is up and serving."""
    return JSONBytesResponse({"status": "ok"})


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(state: State) -> Response:
    """The database (and Redis, when configured) answer."""
    checks: dict[str, str] = {}
    try:
        await ping(state.engine)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    if state.settings.redis_url:
        try:
            ok = await state.rate_limiter.check_storage()
            checks["redis"] = "ok" if ok else "unavailable"
        except Exception as exc:
            checks["redis"] = f"unavailable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONBytesResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
