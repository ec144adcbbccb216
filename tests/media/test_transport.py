"""What the server refuses before a frame reaches a stream, with the app served in process by
``exoplane.serving`` (as the demo and the end-to-end tests serve it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.media.server import TransportTracebackFilter
from exoplane.serving import listening_socket, serving, url_of
from tests.conftest import make_settings

WAIT_SECONDS = 5.0
DEFAULT_LIMIT = 262_144  # EXOPLANE_MEDIA_MAX_MESSAGE_BYTES's default
SMALL_LIMIT = 4_096


def text_frame_header(length: int) -> bytes:
    """A client's text frame header declaring ``length`` payload bytes, with a zero mask."""
    return struct.pack("!BBQ", 0x81, 0x80 | 127, length) + bytes(4)


@contextlib.asynccontextmanager
async def served(settings: Settings, **options: int) -> AsyncIterator[str]:
    """The app on 127.0.0.1 under ``serving``; the media socket's URL for the echo bot."""
    with contextlib.closing(listening_socket()) as sock:
        async with serving(create_app(settings), sock, timeout=WAIT_SECONDS, **options):
            yield url_of(sock).replace("http://", "ws://") + "/exotel/echo"


async def close_code(socket: ClientConnection) -> int | None:
    """Wait (boundedly) for the server to close the socket."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.wait_for(socket.recv(), WAIT_SECONDS)
    return socket.close_code


async def test_serving_refuses_a_message_over_the_default_limit_from_its_header(
    settings: Settings,
) -> None:
    async with served(settings) as url, connect(url) as socket:
        assert socket.transport is not None
        # Only the header and a first kilobyte: a server that waited for the whole message
        # before checking its size would never answer.
        socket.transport.write(text_frame_header(DEFAULT_LIMIT + 1) + b"{" * 1024)
        code = await close_code(socket)

    assert code == 1009


@pytest.fixture
def small_limit(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "home", database_url, media_max_message_bytes=SMALL_LIMIT)


async def test_serving_takes_the_limit_from_the_apps_setting(small_limit: Settings) -> None:
    connected = json.dumps({"event": "connected"})

    async with (
        served(small_limit, ws_max_size=small_limit.media_max_message_bytes) as url,
        connect(url) as socket,
    ):
        # At the limit the frame reaches the stream (white space around JSON is allowed) ...
        await socket.send(connected + " " * (SMALL_LIMIT - len(connected)))
        pong = await socket.ping()
        await asyncio.wait_for(pong, WAIT_SECONDS)  # answered only while the socket is open
        # ... and one byte more is refused by the server.
        await socket.send(connected + " " * (SMALL_LIMIT + 1 - len(connected)))
        code = await close_code(socket)

    assert code == 1009


def record(message: str, error: BaseException | None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, message, (), exc_info)


def test_the_filter_drops_only_uvicorns_invalid_utf8_record() -> None:
    decode_error = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    quiet = TransportTracebackFilter()

    assert quiet.filter(record(TransportTracebackFilter.MESSAGE, decode_error)) is False
    # The same error from an application, or the message without the error, still shows.
    assert quiet.filter(record("Exception in ASGI application\n", decode_error)) is True
    assert quiet.filter(record(TransportTracebackFilter.MESSAGE, None)) is True
    assert quiet.filter(record("Started server process", None)) is True
