"""ASGI apps on real 127.0.0.1 sockets inside the running event loop (demo and tests).

The socket is bound before the app starts, so that its URL can go into the app's own
settings; starting and stopping are bounded in time. As under ``exoplane serve``, a WebSocket
message larger than the media core's limit is refused by the server as its header arrives
(close code 1009), before its payload is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from exoplane.config import Settings

# The default of EXOPLANE_MEDIA_MAX_MESSAGE_BYTES, for apps served without their settings.
DEFAULT_WS_MAX_SIZE: int = Settings.model_fields["media_max_message_bytes"].default


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening socket on a free port of ``host``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serving(
    app: Any,
    sock: socket.socket,
    *,
    timeout: float = 10.0,
    ws_max_size: int = DEFAULT_WS_MAX_SIZE,
) -> AsyncIterator[None]:
    """``app`` under uvicorn on ``sock`` until the block ends.

    ``ws_max_size`` is the largest WebSocket message accepted: pass the app's
    ``media_max_message_bytes`` when it is not the default.
    """
    config = uvicorn.Config(
        app,
        log_level="error",
        log_config=None,  # uvicorn's lines go through the process's own (JSON) logging
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        ws_max_size=ws_max_size,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + timeout
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout)
