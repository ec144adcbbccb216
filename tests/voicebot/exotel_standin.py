"""A real HTTP server on 127.0.0.1 standing in for Exotel's v1 Calls API.

It records every request (path, form fields, Authorization header) and answers each with the
next scripted ``Answer``; once the script is spent it answers a JSON call with a fresh Sid.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    hang: bool = False


def json_call(sid: str, status: str = "in-progress") -> Answer:
    return Answer(body=json.dumps({"Call": {"Sid": sid, "Status": status}}))


def xml_call(sid: str, status: str = "queued") -> Answer:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<TwilioResponse><Call><Sid>{sid}</Sid><Status>{status}</Status>"
        "<Direction>outbound-api</Direction></Call></TwilioResponse>"
    )
    return Answer(body=body, content_type="application/xml")


def json_rest_exception(message: str, status: int = 400) -> Answer:
    body = {"RestException": {"Status": status, "Message": message, "Code": status}}
    return Answer(status=status, body=json.dumps(body))


def xml_rest_exception(message: str, status: int = 400) -> Answer:
    body = (
        f"<TwilioResponse><RestException><Status>{status}</Status>"
        f"<Message>{message}</Message></RestException></TwilioResponse>"
    )
    return Answer(status=status, body=body, content_type="application/xml")


HANG = Answer(hang=True)


@dataclass(frozen=True)
class ExotelRequest:
    method: str
    path: str
    form: dict[str, str]
    authorization: str

    @property
    def basic_auth(self) -> tuple[str, str]:
        scheme, _, encoded = self.authorization.partition(" ")
        assert scheme == "Basic", self.authorization
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return user, password


@dataclass
class ExotelStandIn:
    base_url: str = ""
    script: list[Answer] = field(default_factory=list)
    requests: list[ExotelRequest] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append(
            ExotelRequest(
                request.method,
                request.path,
                {name: str(value) for name, value in form.items()},
                request.headers.get("Authorization", ""),
            )
        )
        answer = self.script.pop(0) if self.script else json_call(f"sid-{len(self.requests)}")
        if answer.hang:
            await asyncio.sleep(3600)
        return web.Response(
            status=answer.status, text=answer.body, content_type=answer.content_type
        )


@asynccontextmanager
async def running_exotel() -> AsyncIterator[ExotelStandIn]:
    standin = ExotelStandIn()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", standin.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    standin.base_url = f"http://127.0.0.1:{port}"
    try:
        yield standin
    finally:
        await runner.cleanup()
