"""``PlainRoute``: documented by FastAPI, handled as a plain Starlette endpoint."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.responses import PlainTextResponse, Response

from exoplane.routing import PlainRoute


async def echo_query(request: Request) -> Response:
    """Answers with the query's ``q``."""
    return PlainTextResponse(request.query_params.get("q", ""))


async def test_a_plain_route_answers_and_is_documented_from_openapi_extra() -> None:
    app = FastAPI()
    parameter = {"name": "q", "in": "query", "required": False, "schema": {"type": "string"}}
    app.router.add_api_route(
        "/echo",
        echo_query,
        methods=["GET"],
        openapi_extra={"parameters": [parameter]},
        route_class_override=PlainRoute,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/echo", params={"q": "hello"})

    assert response.text == "hello"
    operation = app.openapi()["paths"]["/echo"]["get"]
    assert operation["parameters"] == [parameter]
    assert operation["description"] == "Answers with the query's ``q``."


async def _dependency() -> str:
    return "never called"


async def needs_a_dependency(request: Request, value: Annotated[str, Depends(_dependency)]) -> str:
    return value


def test_a_plain_route_refuses_dependencies_it_would_never_run() -> None:
    with pytest.raises(TypeError, match="cannot have dependencies"):
        PlainRoute("/needs", needs_a_dependency, methods=["GET"])
