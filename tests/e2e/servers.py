"""Apps on real 127.0.0.1 ports in the test's event loop, and the Exotel sandbox as one of them.

exoplane's Exotel client and the sandbox's callbacks and streams need real sockets; an app
served here is reachable both ways while the test still runs in a single process.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from exoplane.sandbox.app import SandboxSettings, create_sandbox_app
from exoplane.sandbox.state import TERMINAL
from exoplane.serving import listening_socket, serving, url_of
from tests.waiting import WAIT_SECONDS, polled

TIME_SCALE = 0.02  # three seconds of ringing take 60 ms


@dataclass
class Sandbox:
    """The running sandbox, driven through its ``/_sandbox`` control API, with one account."""

    url: str
    http: httpx.AsyncClient
    account_sid: str

    async def post(self, path: str, body: dict[str, Any], status: int = 201) -> Any:
        response = await self.http.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()

    async def add_flow(self, flow_id: str, applets: list[dict[str, Any]]) -> str:
        """The flow's ``Url`` for Calls/connect."""
        body = {"account_sid": self.account_sid, "id": flow_id, "applets": applets}
        flow = await self.post("/_sandbox/flows", body)
        return str(flow["url"])

    async def add_exophone(self, number: str, flow_id: str) -> None:
        body = {"account_sid": self.account_sid, "number": number, "flow_id": flow_id}
        await self.post("/_sandbox/exophones", body)

    async def add_fault(self, **fault: Any) -> None:
        """Replaces the route's fault; one with neither status nor latency injects nothing."""
        await self.post("/_sandbox/faults", fault)

    async def dial_in(self, to: str, from_: str) -> str:
        """Somebody calls the ExoPhone ``to``: its flow runs. The new call's Sid."""
        started = await self.post("/_sandbox/inbound", {"from": from_, "to": to})
        return str(started["Sid"])

    async def call(self, call_sid: str) -> dict[str, Any]:
        response = await self.http.get(f"/_sandbox/calls/{call_sid}")
        assert response.status_code == 200, response.text
        call: dict[str, Any] = response.json()
        return call

    async def calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = (await self.http.get("/_sandbox/calls")).json()
        return calls

    async def finished_call(self, call_sid: str, *, reports: int = 0) -> dict[str, Any]:
        """The call once it has ended and sent (or dropped) ``reports`` terminal
        StatusCallbacks, so exoplane has heard all it will hear about it."""

        def ended(call: dict[str, Any]) -> bool:
            sent = [callback for callback in call["Callbacks"] if callback["event"] == "terminal"]
            return call["Status"] in TERMINAL and len(sent) >= reports

        return await polled(
            lambda: self.call(call_sid), ended, what=f"call {call_sid} ending", within=WAIT_SECONDS
        )

    async def requests(self) -> list[dict[str, Any]]:
        """Every request the sandbox received or made, oldest first."""
        requests: list[dict[str, Any]] = (await self.http.get("/_sandbox/requests")).json()
        return requests

    async def calls_api_requests(self) -> list[dict[str, Any]]:
        """The requests made to its Exotel API (``/v1/...``), whatever it answered."""
        return [entry for entry in await self.requests() if entry["direction"] == "in"]


@contextlib.asynccontextmanager
async def running_sandbox(
    account_sid: str, api_key: str, api_token: str, **settings: Any
) -> AsyncIterator[Sandbox]:
    """The sandbox on its own port, with one account the Calls API accepts."""
    values: dict[str, Any] = {
        "time_scale": TIME_SCALE,
        "http_timeout_seconds": WAIT_SECONDS,
        **settings,
    }
    app = create_sandbox_app(SandboxSettings(_env_file=None, **values))
    with contextlib.closing(listening_socket()) as sock:
        url = url_of(sock)
        async with (
            serving(app, sock, timeout=WAIT_SECONDS),
            httpx.AsyncClient(base_url=url, timeout=WAIT_SECONDS) as http,
        ):
            sandbox = Sandbox(url, http, account_sid)
            account = {"sid": account_sid, "api_key": api_key, "api_token": api_token}
            await sandbox.post("/_sandbox/accounts", account)
            yield sandbox
