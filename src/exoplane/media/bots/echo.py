"""``echo``: plays the caller's audio back; a key press clears what is still queued."""

from __future__ import annotations

from exoplane.media.bots.base import Bot


class EchoBot(Bot):
    description = "Plays the caller's audio back; marks come back after their audio; DTMF clears."

    async def on_audio(self, pcm: bytes) -> None:
        await self.control.send_audio(pcm)

    async def on_mark(self, name: str) -> None:
        await self.control.mark(name)

    async def on_dtmf(self, digit: str) -> None:
        await self.control.clear()
