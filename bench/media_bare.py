"""The media baseline: a bare Starlette WebSocket that sends every text frame straight back.

``bench/media.py`` serves it with uvicorn exactly as ``exoplane serve`` is served and drives it
with the same simulated Exotel streams. No parsing, no bot, no pacing: the floor set by the
server and framework for taking in and sending back the same audio. A frame containing
``"event":"stop"`` ends the stream with close code 1000, as exoplane does.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

STOP = '"event":"stop"'


async def health(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if STOP in text:
                break
            await websocket.send_text(text)
    except WebSocketDisconnect:
        return
    await websocket.close(1000)


app = Starlette(routes=[Route("/", health), WebSocketRoute("/exotel/{bot_id}", echo)])
