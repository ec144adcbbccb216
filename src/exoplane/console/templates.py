"""Rendering: one Jinja2 environment (autoescaping on), the security headers every console
response carries, and the console's own static files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from exoplane.integrations.calls.schemas import live_response
from exoplane.integrations.calls.service import LiveEntry

HERE = Path(__file__).parent
CONSOLE = "/console"
CONSOLE_STATIC = CONSOLE + "/static"
# A per-app portal link's pages (exoplane.console.portal_routes).
PORTAL = CONSOLE + "/portal"

# No inline script or style anywhere, nothing from another origin, never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

environment = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
environment.globals["static"] = CONSOLE_STATIC
# Where the page's own links start: the console, or a portal link's pages.
environment.globals["base"] = CONSOLE


def compile_templates() -> None:
    """Compile every template now; each is compiled once per process and kept, so no page's
    first view waits for it (the overview with its layout and macros takes 30-70 ms)."""
    for name in environment.list_templates():
        environment.get_template(name)


def render(template: str, status_code: int = 200, **context: Any) -> Response:
    body = environment.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def redirect(path: str) -> Response:
    """303 See Other: after a form, the browser GETs the page it lands on."""
    return RedirectResponse(path, status_code=303, headers=SECURITY_HEADERS)


def console_static() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


def live_page_response(entries: AsyncIterator[LiveEntry]) -> Response:
    """A followed call as the API streams it, with the console's headers."""
    response = live_response(entries)
    response.headers.update(SECURITY_HEADERS)
    return response
