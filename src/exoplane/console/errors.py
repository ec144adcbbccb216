"""The console's own failures, and the pages every failure under ``/console`` is shown as.

The API's handlers answer JSON; under ``/console`` the same errors become a page that says
what went wrong (a 403 says which role is needed), and a request that needs a session is sent
to the sign-in page instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from exoplane.console.templates import CONSOLE, PORTAL, redirect, render
from exoplane.errors import (
    ExoplaneError,
    Forbidden,
    RateLimited,
    Unauthorized,
    describe_validation_errors,
)
from exoplane.responses import request_id_of


class SignInRequired(Unauthorized):
    code = "sign_in_required"


class SignInFailed(Unauthorized):
    code = "sign_in_failed"


class SignInLimited(RateLimited):
    code = "sign_in_limited"


class CsrfRefused(Forbidden):
    code = "csrf_refused"


Handler = Callable[[Request, Exception], Awaitable[Response]]
TITLES = {
    400: "Bad request",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    413: "Too large",
    429: "Too many attempts",
    502: "Exotel refused",
    503: "Unavailable",
}


def is_console(request: Request) -> bool:
    path = request.url.path
    return path == CONSOLE or path.startswith(CONSOLE + "/")


def is_portal(request: Request) -> bool:
    path = request.url.path
    return path == PORTAL or path.startswith(PORTAL + "/")


def error_page(request: Request, status: int, message: str) -> Response:
    return render(
        "error.html",
        status_code=status,
        request=request,
        title=TITLES.get(status, "Error"),
        message=message,
        request_id=request_id_of(request.scope),
        operator=getattr(request.state, "console_operator", None),
        portal_error=is_portal(request),
        base=PORTAL if is_portal(request) else CONSOLE,
    )


def install_console_error_pages(app: FastAPI) -> None:
    """Wrap the API's handlers: under ``/console`` errors are pages, elsewhere unchanged."""

    def wrap(kind: type[Exception], page: Callable[[Request, Exception], Response]) -> None:
        api_handler: Handler = app.exception_handlers[kind]  # type: ignore[assignment]

        async def handle(request: Request, exc: Exception) -> Response:
            if not is_console(request):
                return await api_handler(request, exc)
            return page(request, exc)

        app.add_exception_handler(kind, handle)

    def exoplane_page(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ExoplaneError)
        if isinstance(exc, SignInRequired) and request.method == "GET":
            return redirect(f"{CONSOLE}/login?next={quote(request.url.path)}")
        response = error_page(request, exc.status, exc.message)
        response.headers.update(exc.headers)
        return response

    def validation_page(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message, _ = describe_validation_errors(exc.errors())
        return error_page(request, 400, message)

    def http_page(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = str(exc.detail)
        if exc.status_code == 404:
            message = "There is no page here."
        return error_page(request, exc.status_code, message)

    wrap(ExoplaneError, exoplane_page)
    wrap(RequestValidationError, validation_page)
    wrap(HTTPException, http_page)
