"""The error model, and the handlers that render errors in both envelopes (SPEC §4.2).

Exotel-compatible endpoints answer ``{RequestId, Status, Code, Error, Data}``; everything else
answers ``{"success": false, "error": {code, message, request_id}}``.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from exoplane.inputs import MAX_ECHO, InputRefused, echo
from exoplane.logs import get_logger
from exoplane.responses import JSONBytesResponse, request_id_of

log = get_logger("exoplane.errors")

LEGACY_PATH = re.compile(
    r"^/v2/integrations/(token|agent_token|app|app_setting|usermapping|device|users|call)(/|$)"
)


class ExoplaneError(Exception):
    """An expected failure: a 4xx (or 502) with a stable snake_case code and a clear message."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.field = field
        self.headers = dict(headers or {})


class BadRequest(ExoplaneError):
    status = 400
    code = "invalid_request"


class Unauthorized(ExoplaneError):
    status = 401
    code = "unauthorized"


class Forbidden(ExoplaneError):
    status = 403
    code = "forbidden"


class NotFound(ExoplaneError):
    status = 404
    code = "not_found"


class Conflict(ExoplaneError):
    status = 409
    code = "conflict"


class RateLimited(ExoplaneError):
    status = 429
    code = "rate_limited"


class UpstreamError(ExoplaneError):
    status = 502
    code = "upstream_error"


class ServiceUnavailable(ExoplaneError):
    status = 503
    code = "service_unavailable"


# What a client is told to wait before retrying during an outage.
RETRY_AFTER_SECONDS = 5
# An outage is logged once per kind per this many seconds, with how many failures it hid.
OUTAGE_LOG_SECONDS = 10.0

# Modules whose frames in a traceback show that a connection or timeout error came from the
# database rather than from anything else an endpoint does.
_DATABASE_MODULES = ("sqlalchemy.", "asyncpg.", "aiosqlite.", "sqlite3.", "exoplane.db")
# SQLite's errors that mean the database cannot be used now, not that a statement is wrong.
_SQLITE_UNAVAILABLE = (
    "unable to open database file",
    "disk i/o error",
    "readonly database",
    "file is not a database",
    "database disk image is malformed",
)


def database_outage(exc: BaseException) -> str | None:
    """``"database_timeout"`` or ``"database_unavailable"`` when ``exc`` says the database
    cannot be reached or did not answer in time; ``None`` for any other error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _outage_kind(current)
        if kind is not None:
            return kind
        current = current.__cause__ or current.__context__
    return None


def _outage_kind(exc: BaseException) -> str | None:
    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # no free connection in the pool
        return "database_timeout"
    if isinstance(exc, asyncpg.QueryCanceledError):  # the server's statement_timeout
        return "database_timeout"
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.TooManyConnectionsError
        | asyncpg.ConnectionDoesNotExistError,
    ):
        return "database_unavailable"
    if isinstance(exc, sqlite3.DatabaseError):
        message = str(exc).lower()
        if "locked" in message:  # waited for the write lock for as long as allowed
            return "database_timeout"
        if any(phrase in message for phrase in _SQLITE_UNAVAILABLE):
            return "database_unavailable"
        return None
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return "database_unavailable"
    if isinstance(exc, TimeoutError | OSError) and _raised_by_database(exc):
        return "database_timeout" if isinstance(exc, TimeoutError) else "database_unavailable"
    return None


def _raised_by_database(exc: BaseException) -> bool:
    traceback = exc.__traceback__
    while traceback is not None:
        module = str(traceback.tb_frame.f_globals.get("__name__", ""))
        if module.startswith(_DATABASE_MODULES):
            return True
        traceback = traceback.tb_next
    return False


_OUTAGE_MESSAGES = {
    "database_timeout": "The database did not answer in time",
    "database_unavailable": "The database is unavailable",
}


class OutageLog:
    """Logs an outage once per kind per interval, counting the failures it did not log.

    During an outage every request fails the same way; a line (let alone a traceback) for
    each would bury everything else in the log.
    """

    def __init__(self, interval: float = OUTAGE_LOG_SECONDS) -> None:
        self._interval = interval
        # kind -> (when it was last logged, failures since then)
        self._kinds: dict[str, tuple[float, int]] = {}

    def failed(self, kind: str, exc: BaseException) -> None:
        now = time.monotonic()
        logged_at, suppressed = self._kinds.get(kind, (-math.inf, 0))
        if now - logged_at < self._interval:
            self._kinds[kind] = (logged_at, suppressed + 1)
            return
        self._kinds[kind] = (now, 0)
        log.error(
            "database outage",
            kind=kind,
            error=type(exc).__name__,
            detail=bounded(str(exc)),
            suppressed=suppressed,
            interval_seconds=self._interval,
        )


def outage_error(kind: str) -> ServiceUnavailable:
    """The 503 a request gets during an outage of ``kind``."""
    return ServiceUnavailable(
        f"{_OUTAGE_MESSAGES[kind]}; retry in a few seconds",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


# The errors an outage raises (whether one of them is an outage, database_outage() says).
_DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.TimeoutError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def is_legacy_path(path: str) -> bool:
    return LEGACY_PATH.match(path) is not None


# An error message never echoes a long input in full: each run of this many characters
# without a space is cut, and so is the whole message.
_LONG_RUN = re.compile(rf"\S{{{MAX_ECHO + 1},}}")
MAX_MESSAGE = 2_000


def bounded(message: str) -> str:
    """``message`` with every long echoed value cut, and at most ``MAX_MESSAGE`` long."""
    if len(message) > MAX_ECHO:
        message = _LONG_RUN.sub(lambda run: echo(run.group(0)), message)
    return echo(message, MAX_MESSAGE)


def error_body(
    request_id: str, path: str, status: int, code: str, message: str, field: str | None = None
) -> dict[str, Any]:
    message = bounded(message)
    if is_legacy_path(path):
        return {
            "RequestId": request_id,
            "Status": "Failed",
            "Code": status,
            "Error": message,
            "Data": None,
        }
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if field is not None:
        error["field"] = field
    return {"success": False, "error": error}


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = error_body(request_id_of(request.scope), request.url.path, status, code, message, field)
    return JSONBytesResponse(body, status_code=status, headers=headers)


_SOURCES = {
    "body": "field",
    "query": "query parameter",
    "path": "path parameter",
    "header": "header",
}
# At most this many problems are listed in one validation error; the rest are counted.
MAX_LISTED_PROBLEMS = 10
# What FastAPI answers when a body cannot be read as JSON at all (bad UTF-8, nesting too deep).
_UNREADABLE_BODY = "There was an error parsing the body"


def describe_validation_errors(errors: Sequence[Any]) -> tuple[str, str | None]:
    """Turn pydantic errors into one sentence naming each offending field."""
    parts: list[str] = []
    first_field: str | None = None
    for listed, error in enumerate(errors):
        if listed == MAX_LISTED_PROBLEMS:
            parts.append(f"and {len(errors) - listed} more")
            break
        kind = error.get("type", "")
        if kind == "json_invalid":
            return "Request body is not valid JSON", None
        if isinstance(error.get("input"), bytes | bytearray):
            return "Request body must be JSON, sent with Content-Type: application/json", None
        source, *path = [str(part) for part in error.get("loc", ("body",))]
        noun = _SOURCES.get(source, "field")
        field = echo(".".join(path))
        first_field = first_field or field or None
        detail = echo(str(error.get("msg", "invalid")).removeprefix("Value error, "), 300)
        if not field:
            parts.append(
                "a JSON request body is required"
                if kind == "missing"
                else f"request body: {detail}"
            )
        elif kind == "missing":
            parts.append(f"{noun} '{field}' is required")
        elif kind == "extra_forbidden":
            parts.append(f"'{field}' is not a known field")
        else:
            parts.append(f"{noun} '{field}': {detail}")
    message = "; ".join(parts) or "invalid request"
    return message[0].upper() + message[1:], first_field


def _allowed_methods(request: Request) -> list[str]:
    """Every method of every route at the request's path (HEAD wherever there is a GET): the
    router's own 405 names only the first route's."""
    path = request.url.path
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install_error_handlers(app: FastAPI, outages: OutageLog | None = None) -> None:
    outage_log = outages or OutageLog()

    async def on_exoplane_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ExoplaneError)
        return error_response(
            request, exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message, field = describe_validation_errors(exc.errors())
        return error_response(request, 400, "validation_error", message, field=field)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if isinstance(exc, InputRefused):
            return error_response(request, 400, exc.code, exc.detail, field=exc.field)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        message = str(exc.detail)
        if exc.status_code == 400 and message == _UNREADABLE_BODY:
            message = "Request body is not valid JSON"
            return error_response(request, 400, "validation_error", message)
        if exc.status_code == 404 and message == "Not Found":
            message = f"No endpoint at {echo(request.url.path)}"
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
            if message == "Method Not Allowed":
                message = f"{request.method} is not allowed on {echo(request.url.path)}"
        return error_response(
            request,
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            message,
            headers=headers,
        )

    async def on_database_error(request: Request, exc: Exception) -> Response:
        kind = database_outage(exc)
        if kind is None:
            raise exc
        outage_log.failed(kind, exc)
        return await on_exoplane_error(request, outage_error(kind))

    app.add_exception_handler(ExoplaneError, on_exoplane_error)
    for kind in _DATABASE_ERRORS:
        app.add_exception_handler(kind, on_database_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
