"""exoplane as real child processes, driven as Exotel and an integrator would drive it, with
a webhook receiver on 127.0.0.1 that keeps track of every webhook it gets: what the
durability and cluster tests share.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from aiohttp import web

from tests.conftest import free_port, make_settings
from tests.factories import Customer, RegisteredApp, create_customer, get_token, register_app

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# Short, so a delivery cut off by a crash is leased again after 1 * 2 + 5 = 7 s.
WEBHOOK_ENV = {
    "EXOPLANE_ALLOW_PRIVATE_NETWORKS": "true",
    "EXOPLANE_WEBHOOK_TIMEOUT_SECONDS": "1",
    "EXOPLANE_WEBHOOK_POLL_SECONDS": "0.05",
    "EXOPLANE_WEBHOOK_RETRY_SCHEDULE": ",".join(["0.2"] * 10),
    "EXOPLANE_RATE_LIMIT": "1000000/minute",
    "EXOPLANE_LOG_LEVEL": "info",
}
CALL_PARAMETERS = {"CallFrom": "09876543210", "CallTo": "08047491899"}


# --- the receiver -------------------------------------------------------------------------


class TrackingReceiver:
    """Answers 200 after ``delay`` seconds; records which events arrived, and which were
    arriving at the same moment.

    An event counts as delivered once its answer is sent while its sender is still alive:
    after ``sender_killed()`` the requests then in flight no longer count, because the
    sender never learns they succeeded and must try them again.
    """

    def __init__(self, delay: float, spread: float = 0.0) -> None:
        self.delay = delay
        self.spread = spread  # later arrivals wait up to this much longer, in 16 steps
        self.base_url = ""
        self.delivered: dict[str, str] = {}  # webhook-id -> the call's CallSid
        self.in_flight: Counter[str] = Counter()
        self.arrivals: Counter[str] = Counter()  # webhook-id -> requests received
        self.arrived: dict[str, str] = {}  # webhook-id -> CallSid, answered or not
        self.first_from: dict[str, int] = {}  # webhook-id -> the sender's port, first arrival
        self.overlapping: list[str] = []
        self._generation = 0

    async def handle(self, request: web.Request) -> web.Response:
        event_id = request.headers["webhook-id"]
        payload: dict[str, Any] = json.loads(await request.read())
        self.arrivals[event_id] += 1
        self.arrived[event_id] = str(payload["call_sid"])
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.first_from.setdefault(event_id, peer[1] if peer else 0)
        if self.in_flight[event_id] > 0:
            self.overlapping.append(event_id)
        self.in_flight[event_id] += 1
        generation = self._generation
        try:
            step = (sum(self.arrivals.values()) - 1) % 16
            await asyncio.sleep(self.delay + self.spread * step / 15)
        finally:
            self.in_flight[event_id] -= 1
            if self.in_flight[event_id] == 0:
                del self.in_flight[event_id]
        if generation == self._generation:
            self.delivered[event_id] = str(payload["call_sid"])
        return web.Response(text="ok")

    def sender_killed(self) -> set[str]:
        """The events being received now; their answers will reach nobody."""
        self._generation += 1
        return set(self.in_flight)

    def delivered_calls(self) -> set[str]:
        return set(self.delivered.values())


@asynccontextmanager
async def tracking_receiver(delay: float, spread: float = 0.0) -> AsyncIterator[TrackingReceiver]:
    receiver = TrackingReceiver(delay, spread)
    app = web.Application()
    app.router.add_post("/popup", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", free_port())
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.base_url = f"http://{host}:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


# --- exoplane as child processes ----------------------------------------------------------


class Exoplane:
    """One ``python -m exoplane ...`` child process; its output goes to a log file."""

    def __init__(self, args: Sequence[str], home: Path, env: dict[str, str], name: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = home / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exoplane", *args],
            env={**os.environ, "EXOPLANE_HOME": str(home), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing in flight is finished or handed back."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


async def start(
    stack: AsyncExitStack, args: Sequence[str], home: Path, env: dict[str, str], name: str
) -> Exoplane:
    """Start a child that the stack stops; stopping runs in a thread so that the receiver,
    on this event loop, keeps answering while the child shuts down gracefully."""
    child = Exoplane(args, home, env, name)
    stack.push_async_callback(asyncio.to_thread, child.stop)
    return child


async def serve(
    stack: AsyncExitStack, home: Path, env: dict[str, str], *flags: str, name: str = "serve"
) -> tuple[Exoplane, str]:
    """``exoplane serve`` on a free port, once ``/healthz`` answers; and its base URL."""
    port = free_port()
    child = await start(stack, ["serve", "--port", str(port), *flags], home, env, name)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    async with httpx.AsyncClient(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                pytest.fail(f"{name} exited while starting:\n{child.output()}")
            try:
                if (await http.get(base_url + "/healthz")).status_code == 200:
                    return child, base_url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"{name} did not come up within {STARTUP_TIMEOUT_S:g} s:\n{child.output()}")


# --- driving exoplane as Exotel and an integrator would -----------------------------------


async def app_sending_popups_to(
    base_url: str, home: Path, database_url: str, receiver: TrackingReceiver
) -> tuple[RegisteredApp, str]:
    """A new app whose popup URL is the receiver, and its popup hook (path and query)."""
    customer_id, secret = await create_customer(make_settings(home, database_url))
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        token = await get_token(client, "customer", customer_id, secret)
        app = await register_app(client, Customer(customer_id, secret, token))
        app_path = f"/v2/integrations/{customer_id}/apps/{app.id}"
        headers = {"Authorization": app.token}
        response = await client.put(
            app_path + "/settings",
            headers=headers,
            json={"popup_url": receiver.base_url + "/popup"},
        )
        assert response.status_code == 200, response.text
        response = await client.get(app_path + "/flow-urls", headers=headers)
        assert response.status_code == 200, response.text
    popup = urlsplit(response.json()["data"]["passthru_urls"]["popup"])
    return app, f"{popup.path}?{popup.query}"


async def ring(base_url: str, popup_hook: str, call_sids: Sequence[str]) -> None:
    """Exotel's popup Passthru for each call: one ``incoming_call`` event apiece."""
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:

        async def one(call_sid: str) -> None:
            query = urlencode({"CallSid": call_sid, **CALL_PARAMETERS})
            async with limit:
                response = await client.get(f"{popup_hook}&{query}")
            assert response.status_code == 200, response.text

        await asyncio.gather(*(one(call_sid) for call_sid in call_sids))


async def succeeded_deliveries(base_url: str, app: RegisteredApp) -> int:
    """How many of the app's deliveries the delivery log lists as succeeded."""
    path = f"/v2/integrations/{app.customer_id}/apps/{app.id}/webhooks/deliveries"
    count, cursor = 0, None
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        while True:
            params = {"status": "succeeded", "limit": "100"}
            if cursor is not None:
                params["cursor"] = cursor
            response = await client.get(path, params=params, headers={"Authorization": app.token})
            assert response.status_code == 200, response.text
            page = response.json()["data"]
            count += len(page["deliveries"])
            if not page["has_more"]:
                return count
            cursor = page["next_cursor"]


async def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def delivered_and_logged(
    receiver: TrackingReceiver,
    calls: Sequence[str],
    base_url: str,
    app: RegisteredApp,
    outputs: str,
) -> int:
    """Wait until every call's event has arrived (failing with the children's ``outputs``
    if one never does); then how many deliveries the log lists as succeeded, once it has
    caught up (it is written just after each answer arrives) or 30 s have passed."""
    all_delivered = await wait_until(lambda: receiver.delivered_calls() == set(calls), 120)
    assert all_delivered, (
        f"{len(set(calls) - receiver.delivered_calls())} of {len(calls)} events never "
        f"delivered\n{outputs}"
    )
    deadline = time.monotonic() + 30
    while (logged := await succeeded_deliveries(base_url, app)) < len(calls):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    return logged


def call_sids(count: int) -> list[str]:
    return [f"CA{n:05d}{os.urandom(4).hex()}" for n in range(count)]
