"""The media core's socket, the bot list, and the Prometheus endpoint."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from exoplane.media.server import serve_stream
from exoplane.responses import JSONBytesResponse
from exoplane.state import State
from exoplane.voicebot.auth import AdminAuth

router = APIRouter()


@router.websocket("/exotel/{bot_id}")
async def exotel_stream(websocket: WebSocket, bot_id: str) -> None:
    """Exotel's Voicebot applet connects here (AgentStream protocol)."""
    await serve_stream(websocket, websocket.state.exoplane, bot_id)


@router.get("/api/v1/bots", tags=["voice-bot admin"])
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
