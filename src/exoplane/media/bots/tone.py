"""``tone``: a test tone on answer, and beeps for each key pressed."""

from __future__ import annotations

import math
import struct

from exoplane.media.bots.base import Bot


def sine(frequency: float, seconds: float, sample_rate: int, volume: float = 0.3) -> bytes:
    """PCM16 mono samples of a sine wave."""
    count = int(seconds * sample_rate)
    amplitude = volume * 32767
    return struct.pack(
        f"<{count}h",
        *(
            int(amplitude * math.sin(2 * math.pi * frequency * n / sample_rate))
            for n in range(count)
        ),
    )


class ToneBot(Bot):
    description = "Plays a 440 Hz tone on answer; answers each key with that many beeps."

    async def on_start(self) -> None:
        await self.control.send_audio(sine(440, 1.0, self.call.sample_rate))
        await self.control.mark("greeting")

    async def on_dtmf(self, digit: str) -> None:
        rate = self.call.sample_rate
        beeps = int(digit) if digit.isdigit() and digit != "0" else 1
        beep, gap = sine(880, 0.15, rate), bytes(int(0.1 * rate) * 2)
        await self.control.send_audio((beep + gap) * beeps)
        await self.control.mark(f"dtmf-{digit}")
