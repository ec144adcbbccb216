"""A real HTTP receiver on 127.0.0.1 that records webhooks and answers as scripted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.waiting import WAIT_SECONDS


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each request with the next scripted status (200 once the script is spent);
    ``"hang"`` never answers, so the sender times out."""

    base_url: str = ""
    script: list[int | str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str) -> str:
        return self.base_url + path

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        async with self.arrived:
            self.received.append(
                Received(request.path, dict(request.headers), body, time.monotonic())
            )
            self.arrived.notify_all()
        outcome = self.script.pop(0) if self.script else 200
        if outcome == "hang":
            await asyncio.sleep(3600)
        return web.Response(status=int(outcome), text=f"answered {outcome}")

    async def wait_for(self, count: int, timeout: float = WAIT_SECONDS) -> list[Received]:
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: len(self.received) >= count), timeout
            )
        return list(self.received)


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.base_url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
