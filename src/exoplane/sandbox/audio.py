"""The caller's voice in a simulated call: a built-in clip, and 100 ms frames of it.

The clip is made from arithmetic alone (no files), so every run streams the same bytes and a
byte-exact echo can be checked against it.
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache

FRAME_MS = 100
# Three rising notes (C5, E5, G5), each faded in and out so that no edge clicks.
NOTES_HZ = (523.25, 659.25, 783.99)
NOTE_MS = 400
FADE_MS = 40
VOLUME = 0.25


@lru_cache(maxsize=8)
def builtin_clip(sample_rate: int = 8000) -> bytes:
    """1.2 s of PCM16 little-endian mono at ``sample_rate``: a whole number of 100 ms frames."""
    if sample_rate <= 0 or sample_rate * FRAME_MS % 1000:
        raise ValueError(f"sample rate {sample_rate} does not divide into {FRAME_MS} ms frames")
    per_note = sample_rate * NOTE_MS // 1000
    fade = sample_rate * FADE_MS // 1000
    amplitude = VOLUME * 32767
    samples: list[int] = []
    for frequency in NOTES_HZ:
        step = 2 * math.pi * frequency / sample_rate
        for n in range(per_note):
            edge = min(n, per_note - 1 - n)
            envelope = 0.5 - 0.5 * math.cos(math.pi * edge / fade) if edge < fade else 1.0
            samples.append(round(amplitude * envelope * math.sin(step * n)))
    return struct.pack(f"<{len(samples)}h", *samples)


def frames(audio: bytes, sample_rate: int, frame_ms: int = FRAME_MS) -> list[bytes]:
    """``audio`` cut into ``frame_ms`` frames; a trailing partial frame is kept as it is."""
    if len(audio) % 2:
        raise ValueError(f"PCM16 audio must be whole samples; got {len(audio)} bytes")
    size = sample_rate * 2 * frame_ms // 1000
    if size <= 0 or size % 2:
        raise ValueError(f"{frame_ms} ms at {sample_rate} Hz is not a whole number of samples")
    return [audio[offset : offset + size] for offset in range(0, len(audio), size)]


def echoed(spoken: bytes, heard: bytes) -> int:
    """How many times ``heard`` holds ``spoken`` byte for byte, when everything else in it is
    silence; 0 otherwise. An echo bot returns the whole line: each utterance, and the
    silence around it."""
    count = heard.count(spoken) if spoken else 0
    return count if count and not any(heard.replace(spoken, b"")) else 0
