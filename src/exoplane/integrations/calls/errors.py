"""Exotel's nested error form, which ``/call/outbound_call`` answers its failures in.

Exotel's ``outbound_call`` passes on its v2 API's error envelope as a JSON string in the
``Error`` field (exotel-facts §1.2, §1.9), and the older jQuery SDK reads the message from
there: ``{"request_id", "method", "http_code", "response": {"code", "status", "data",
"error_data": {"code", "message", "description"}}}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from exoplane.responses import JSONBytesResponse

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
ExceptionHandler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


def nested_error(request_id: str, method: str, status: int, message: str) -> str:
    """``message`` as Exotel's v2 error envelope, serialised for the ``Error`` field."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    envelope = {
        "request_id": request_id,
        "method": method,
        "http_code": status,
        "response": {
            "code": status,
            "status": "failure",
            "data": None,
            "error_data": {"code": status, "message": reason, "description": message},
        },
    }
    return json.dumps(envelope, ensure_ascii=False)


class NestedErrorRoute(APIRoute):
    """A route whose failures, rendered by the app's own handlers into the legacy envelope,
    carry Exotel's nested error form in ``Error`` instead of a plain message. Failures the
    app has no handler for stay the generic 500."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                render = _exception_handler(request, exc)
                if render is None:
                    raise
                return _nest(await render(request, exc), request.method)

        return route


def _exception_handler(request: Request, exc: Exception) -> ExceptionHandler | None:
    handlers: dict[Any, ExceptionHandler] = request.app.exception_handlers
    for kind in type(exc).__mro__:
        if kind in handlers:
            return handlers[kind]
    return None


def _nest(response: Response, method: str) -> Response:
    body = json.loads(bytes(response.body))
    if not isinstance(body, dict) or not isinstance(body.get("Error"), str):
        return response
    body["Error"] = nested_error(body["RequestId"], method, response.status_code, body["Error"])
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("content-length", "content-type")
    }
    return JSONBytesResponse(body, status_code=response.status_code, headers=headers)
