"""A bounded schemathesis run over every operation of the API, against the real app on this
test's database: no 5xx, every response matches its documented schema, status and type."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from exoplane.app import create_app
from exoplane.exotel.client import ExotelClient
from exoplane.state import AppState
from tests.conftest import make_settings
from tests.factories import create_user, customer_with_token, register_app
from tests.voicebot.factories import create_operator

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 5, GenerationMode.NEGATIVE: 3}
# Operations that take away the credentials or data the others need run last, in this order.
LAST = [
    ("DELETE", "/v2/integrations/users/{user_id}"),
    ("DELETE", "/v2/integrations/users"),
    ("DELETE", "/v2/integrations/usermapping"),
    ("DELETE", "/v2/integrations/app"),
    ("DELETE", "/v2/integrations/token"),
]
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class LoopbackOnly(httpx.AsyncBaseTransport):
    """The fuzzer may point the Exotel integration anywhere; nothing may leave this machine."""

    def __init__(self) -> None:
        self._transport = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host not in LOOPBACK:
            raise httpx.ConnectError(f"{request.url.host} is not loopback", request=request)
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._transport.aclose()


@pytest.fixture
async def fuzz_client(tmp_path: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # Private targets are allowed so that no URL check looks a fuzzed host name up in DNS;
    # the limit is high so that the run exercises the endpoints rather than the limiter.
    settings = make_settings(
        tmp_path / "home", database_url, allow_private_networks=True, rate_limit="100000/minute"
    )
    async with LifespanManager(create_app(settings)) as manager:
        # The lifespan's state is what every request sees; its Exotel client is swapped for
        # one whose transport only reaches loopback.
        state: AppState = manager._state["exoplane"]
        guarded = ExotelClient(httpx.AsyncClient(transport=LoopbackOnly(), timeout=5.0))
        manager._state["exoplane"] = dataclasses.replace(state, exotel=guarded)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
        await guarded.aclose()


def _send(
    client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop
) -> Callable[[schemathesis.Case[Any], dict[str, str]], httpx.Response]:
    """Send a case from the fuzzer's thread through the app running on the test's loop."""

    def send(case: schemathesis.Case[Any], headers: dict[str, str]) -> httpx.Response:
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
        sent_headers = dict(kwargs.get("headers") or {})
        if kwargs.get("cookies"):  # the API reads none, but the fuzzer may send some
            sent_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in kwargs["cookies"].items())
        request: dict[str, Any] = {
            "method": kwargs["method"],
            "url": kwargs["url"],
            "headers": sent_headers,
            "params": kwargs.get("params"),
        }
        if "json" in kwargs:
            request["json"] = kwargs["json"]
        elif isinstance(kwargs.get("data"), bytes | str):
            request["content"] = kwargs["data"]
        elif kwargs.get("data") is not None:
            request["data"] = kwargs["data"]
        future = asyncio.run_coroutine_threadsafe(client.request(**request), loop)
        return future.result(timeout=60)

    return send


async def test_every_operation_answers_as_documented(
    fuzz_client: httpx.AsyncClient, settings: Any
) -> None:
    client = fuzz_client
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)
    await create_user(client, app)
    agent = await client.post(
        "/v2/integrations/agent_token",
        headers={"Authorization": app.token},
        json={"user_id": "agent_001"},
    )
    operator = await create_operator(settings, "root@example.com", "super_admin")
    credentials = {
        "customerToken": customer.token,
        "appToken": app.token,
        "agentToken": agent.json()["Data"],
        "operatorApiKey": operator.api_key,
    }
    # Ids in paths are this app's, so the fuzzer reaches past the tenant check.
    path_ids = {"customer_id": customer.id, "app_id": app.id}
    document = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    order = {operation: index for index, operation in enumerate(LAST)}
    operations.sort(key=lambda op: order.get((op.method.upper(), op.path), -1))
    send = _send(client, asyncio.get_running_loop())
    failures: list[str] = []
    seen: set[str] = set()
    timings: list[str] = []

    def fuzz_one(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
        label = f"{operation.method.upper()} {operation.path}"
        ids = {name: value for name, value in path_ids.items() if name in operation.path}

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode, path_parameters=ids))
        @hypothesis.settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case[Any]) -> None:
            response = send(case, headers)
            seen.add(label)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except Exception as exc:
                failures.append(f"{label}: {exc}")

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # Nothing to make invalid: an operation with no parameters and no body.
            assert mode is GenerationMode.NEGATIVE, label

    def fuzz() -> None:
        for operation in operations:
            security = operation.definition.raw.get("security") or [{}]
            scheme = next(iter(security[0]), None)
            headers = {"Authorization": f"Bearer {credentials[scheme]}"} if scheme else {}
            for mode in EXAMPLES:
                fuzz_one(operation, mode, headers)
                timings.append(f"{time.monotonic() - started:6.2f} {mode.value} {operation.label}")

    started = time.monotonic()
    await asyncio.to_thread(fuzz)
    elapsed = time.monotonic() - started
    assert failures == []
    assert len(seen) == len(operations)
    assert elapsed < 60, "the run took too long:\n" + "\n".join(timings)
