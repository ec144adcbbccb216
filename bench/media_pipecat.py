"""The peer: a pipecat echo bot, wired as Exotel's own pipecat sample for AgentStream wires one.

``bench/media.py`` serves it with uvicorn exactly as the other two servers are served and
drives it with the same simulated Exotel streams. Each WebSocket is accepted by FastAPI, its
``connected`` and ``start`` messages are read by pipecat's ``parse_telephony_websocket``, and
a ``FastAPIWebsocketTransport`` with an ``ExotelFrameSerializer`` for the stream runs a
pipeline of the transport's input, an echo and the transport's output at 8 kHz: where the
sample has speech-to-text, a language model and text-to-speech, this has one processor that
turns every inbound audio frame into an outbound one. pipecat's output transport re-cuts the
audio into its own chunks (40 ms by default) and paces them at real time, as it does for
speech. Needs the ``bench`` extra (pipecat-ai).

pipecat's Exotel serializer ignores ``stop``: on a real call Exotel closes the socket itself,
and so does the benchmark's client for this server.
"""

from __future__ import annotations

import sys

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse
from loguru import logger
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.exotel import ExotelFrameSerializer
from pipecat.transports.base_transport import BaseTransport
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner

SAMPLE_RATE = 8000  # Exotel's PCM16 rate: no resampling on either side

# The servers in the benchmark all log at warning; pipecat's default is every debug line.
logger.remove()
logger.add(sys.stderr, level="WARNING")


class Echo(FrameProcessor):
    """Sends every inbound audio frame back out as it came; passes every other frame on."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(
                OutputAudioRawFrame(
                    audio=frame.audio,
                    sample_rate=frame.sample_rate,
                    num_channels=frame.num_channels,
                )
            )
        else:
            await self.push_frame(frame, direction)


async def run_echo(transport: BaseTransport) -> None:
    """One call: the pipeline runs until the caller hangs up."""
    worker = PipelineWorker(
        Pipeline([transport.input(), Echo(), transport.output()]),
        params=PipelineParams(audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE),
    )

    @transport.event_handler("on_client_disconnected")  # type: ignore[untyped-decorator]
    async def on_client_disconnected(_transport: BaseTransport, _client: object) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


app = FastAPI()


@app.get("/")
async def health() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@app.websocket("/exotel/{bot_id}")
async def exotel(websocket: WebSocket, bot_id: str) -> None:
    await websocket.accept()
    _kind, call = await parse_telephony_websocket(websocket)
    serializer = ExotelFrameSerializer(stream_sid=call["stream_id"], call_sid=call["call_id"])
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    await run_echo(transport)
