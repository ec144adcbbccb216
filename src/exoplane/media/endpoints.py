"""The media core's socket, the bot list, and the Prometheus endpoint."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from exoplane.media.server import quiet_transport_tracebacks, serve_stream
from exoplane.responses import JSONBytesResponse
from exoplane.state import State
from exoplane.voicebot.auth import AdminAuth
from exoplane.voicebot.schemas import BotList

router = APIRouter()


class ExotelStream:
    """Exotel's Voicebot applet connects here (AgentStream protocol).

    A plain ASGI endpoint rather than a FastAPI one: a call's frames come ten a second for as
    long as it lasts, and each of them would otherwise also pass through the layers FastAPI
    and Starlette wrap around a WebSocket endpoint to inject dependencies and map exceptions,
    neither of which a stream uses. The socket is still Starlette's ``WebSocket``.

    A stream logs the frames its server refuses itself, so the endpoint quiets the server's
    own traceback for them.
    """

    def __init__(self) -> None:
        quiet_transport_tracebacks()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        socket = WebSocket(scope, receive, send)
        await serve_stream(socket, socket.state.exoplane, socket.path_params["bot_id"])


router.routes.append(WebSocketRoute("/exotel/{bot_id}", ExotelStream(), name="exotel_stream"))


@router.get("/api/v1/bots", tags=["voice-bot admin"], response_model=BotList)
async def list_bots(state: State, _operator: AdminAuth) -> Response:
    """The bots this media core can serve, for the DID form."""
    bots = [
        {"id": bot_id, "description": bot.description} for bot_id, bot in sorted(state.bots.items())
    ]
    return JSONBytesResponse({"bots": bots})


@router.get("/metrics", tags=["health"], include_in_schema=False)
async def prometheus_metrics() -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
