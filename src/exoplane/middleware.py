"""Pure ASGI middleware: request ids, access logs, body limits, last-resort error handling."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exoplane.errors import OutageLog, database_outage, error_body, outage_error
from exoplane.inputs import InputRefused, check_body, check_request_head
from exoplane.logs import enabled_for, get_logger
from exoplane.responses import REQUEST_ID, JSONBytesResponse

# Request-state key of the rate limiter's response headers, as raw ASGI header pairs.
RATE_LIMIT_HEADERS = "rate_limit_headers"

log = get_logger("exoplane.http")

# Paths that carry a credential: logged only up to here (a portal link's token follows).
SECRET_PATHS = ("/console/portal/open/",)


def loggable_path(path: str) -> str:
    """The request's path as the log may show it: a credential in it is redacted."""
    for prefix in SECRET_PATHS:
        if path.startswith(prefix):
            return prefix + "[redacted]"
    return path


def carries_secret(scope: MutableMapping[str, Any]) -> bool:
    """Whether the request's path holds a credential: kept out of telemetry altogether."""
    path = scope.get("path", "")
    return isinstance(path, str) and path.startswith(SECRET_PATHS)


def new_request_id() -> str:
    """A random (version 4) UUID. Request ids need uniqueness, not secrecy, so they come from
    the process's PRNG rather than a system call per request."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


class RequestContextMiddleware:
    """Gives every request an id (``X-Request-ID``), logs it once, and never leaks a traceback.

    Also applies the headers that the rate limiter leaves in the request state, so that they
    are present on error responses too.
    """

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, outages: OutageLog | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.outages = outages or OutageLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = new_request_id()
        # A copy per request: servers may hand every request the same lifespan-state dict.
        state = scope["state"] = dict(scope.get("state", {}))
        state[REQUEST_ID] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        method = scope["method"]
        if method == "HEAD":
            # A HEAD is the GET without its body: same route, same headers.
            scope = {**scope, "method": "GET"}

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                    *state.get(RATE_LIMIT_HEADERS, ()),
                ]
            elif method == "HEAD" and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            check_request_head(scope["path"], scope.get("query_string", b""), scope["headers"])
            await self._check_declared_length(scope)
            await self.app(scope, self._limited(scope, receive), send_with_headers)
        except InputRefused as exc:  # raised before routing: a NUL, or a repeated header
            status = exc.status_code
            await self._send_error(scope, send_with_headers, status, exc.code, exc, exc.field)
        except HTTPException as exc:  # raised before routing, e.g. by the body limit
            status = exc.status_code
            await self._send_error(scope, send_with_headers, status, "payload_too_large", exc)
        except Exception as exc:
            outage = database_outage(exc)
            if outage is not None:  # raised outside any route, where the handlers do not reach
                self.outages.failed(outage, exc)
                if not response_started:
                    status = 503
                    error = outage_error(outage)
                    await self._send_error(
                        scope, send_with_headers, status, error.code, error, headers=error.headers
                    )
                return
            log.exception("unhandled error", method=method, path=loggable_path(scope["path"]))
            if not response_started:
                await self._send_error(
                    scope,
                    send_with_headers,
                    500,
                    "internal_error",
                    f"Internal server error; quote request id {request_id} when reporting it",
                )
        finally:
            if enabled_for(logging.INFO):
                log.info(
                    "request",
                    method=method,
                    path=loggable_path(scope["path"]),
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")

    async def _check_declared_length(self, scope: Scope) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_body_bytes:
                    raise HTTPException(413, self._too_large_message())
                return

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        """``receive``, refusing a body over the limit, and (once complete) one with a NUL
        in any string."""
        received = 0
        chunks: list[bytes] = []

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_body_bytes:
                    raise HTTPException(413, self._too_large_message())
                chunks.append(chunk)
                if not message.get("more_body", False):
                    await check_body(Headers(scope=scope), b"".join(chunks))
                    chunks.clear()
            return message

        return limited_receive

    def _too_large_message(self) -> str:
        return f"Request body is larger than the limit of {self.max_body_bytes} bytes"

    @staticmethod
    async def _send_error(
        scope: Scope,
        send: Send,
        status: int,
        code: str,
        error: Exception | str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        message = error.detail if isinstance(error, HTTPException) else str(error)
        state = scope.get("state", {})
        request_id = str(state.get(REQUEST_ID, ""))
        body = error_body(request_id, scope["path"], status, code, message, field)
        response = JSONBytesResponse(body, status_code=status, headers=headers)
        await response(scope, _drain, send)


async def _drain() -> Message:
    return {"type": "http.disconnect"}
