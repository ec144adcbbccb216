"""The interface a voice bot implements, and the controls it gets for its call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What Exotel said about the call when its stream started."""

    bot_id: str
    stream_sid: str
    call_sid: str
    account_sid: str
    from_number: str
    to_number: str
    sample_rate: int
    custom_parameters: dict[str, str] = field(default_factory=dict)


class CallControl(Protocol):
    """What a bot can do to its call. Audio is queued and played out at real time."""

    async def send_audio(self, pcm: bytes) -> None:
        """Queue PCM16 mono audio at the call's sample rate."""

    async def mark(self, name: str) -> None:
        """Send a mark after the audio queued so far; Exotel echoes it once played."""

    async def clear(self) -> None:
        """Drop queued audio that has not been played (barge-in)."""

    async def hang_up(self) -> None:
        """End the call once the audio queued so far has played: the stream closes (1000)
        at once, and Exotel ends the call."""


class Bot:
    """A voice bot: one instance per call. Override the hooks you need.

    Register it under the ``exoplane.bots`` entry-point group; its entry-point name is the
    ``bot_id`` in ``wss://<core>/exotel/{bot_id}``.
    """

    description: ClassVar[str] = ""

    def __init__(self, call: CallInfo, control: CallControl) -> None:
        self.call = call
        self.control = control

    async def on_start(self) -> None:
        """The stream started; ``self.call`` holds the call's details."""

    async def on_audio(self, pcm: bytes) -> None:
        """The caller's audio: PCM16 mono, at ``self.call.sample_rate``."""

    async def on_dtmf(self, digit: str) -> None:
        """The caller pressed a key."""

    async def on_mark(self, name: str) -> None:
        """Exotel finished playing the audio queued before mark ``name``."""

    async def on_stop(self, reason: str) -> None:
        """The stream ended (``callended``, ``stopped``, or the socket closed)."""
