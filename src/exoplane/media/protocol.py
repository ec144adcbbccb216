"""AgentStream messages (exotel-facts §4), parsed and built as plain data; no I/O here.

Both ends of the protocol use this module: the media core (the bot's side) parses what Exotel
sends and builds ``media``, ``mark`` and ``clear``; the sandbox (Exotel's side) builds
``connected``, ``start``, ``media``, the ``mark`` echo and ``stop``, and parses the bot's.

Tolerant where the real world varies: ``stream_sid`` or ``streamSid``, numbers as strings or
integers, ``Event``/``Payload`` capitalised, ``closed`` meaning ``stop``. Strict where it
matters: base64 must be valid, PCM16 must be whole samples, the sample rate one of three.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Every frame of a call passes through here ten times a second. orjson and pybase64 parse
# and build a 100 ms media frame several times faster than the standard library's json and
# base64, and raise the same exception types (ValueError, binascii.Error).
import orjson
import pybase64

SAMPLE_RATES = (8000, 16000, 24000)
DEFAULT_SAMPLE_RATE = 8000
MAX_CUSTOM_PARAMETERS = 3
# Outbound audio: whole multiples of 320 bytes (20 ms at 8 kHz), at least 3,200 bytes.
CHUNK_ALIGNMENT = 320
MIN_CHUNK_BYTES = 3200


class ProtocolError(ValueError):
    """A frame that is not a valid AgentStream message; the reason says why."""


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    from_number: str
    to_number: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    sample_rate: int = DEFAULT_SAMPLE_RATE
    encoding: str = "raw"


# Not frozen, unlike the other messages: one is built for every frame of every call, and a
# frozen dataclass sets each field through object.__setattr__, which made building one three
# times as slow.
@dataclass(slots=True)
class Media:
    stream_sid: str
    payload: bytes
    chunk: int | None = None
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str
    duration: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    reason: str


@dataclass(frozen=True, slots=True)
class Clear:
    """Only bots send ``clear``; parsed so that a peer echoing it is understood."""

    stream_sid: str


Message = Connected | Start | Media | Dtmf | Mark | Stop | Clear


def parse_message(frame: str | bytes) -> Message:
    """One inbound frame as a message, or ``ProtocolError``. Never raises anything else."""
    try:
        document = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:  # too deep, or not UTF-8, included
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError("not a JSON object")
    try:
        media = _parse_media(document)
        return media if media is not None else _parse_any(document)
    except ProtocolError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from None


def _parse_any(document: Mapping[str, Any]) -> Message:
    event = _get(document, "event")
    if not isinstance(event, str):
        raise ProtocolError("missing 'event'")
    kind = event.lower()
    sid = _stream_sid(document)
    if kind == "connected":
        protocol = _get(document, "protocol")
        return Connected(str(protocol) if protocol is not None else None)
    if kind == "start":
        return _start(document, sid)
    if kind == "media":
        body = _section(document, "media")
        payload = _get(body, "payload")
        if not isinstance(payload, str):
            raise ProtocolError("media without a base64 'payload'")
        return Media(
            sid, decode_audio(payload), _int(_get(body, "chunk")), _int(_get(body, "timestamp"))
        )
    if kind == "dtmf":
        body = _section(document, "dtmf")
        digit = _get(body, "digit")
        if not isinstance(digit, str | int) or not str(digit):
            raise ProtocolError("dtmf without a 'digit'")
        return Dtmf(sid, str(digit), _int(_get(body, "duration")))
    if kind == "mark":
        name = _get(_section(document, "mark"), "name")
        if not isinstance(name, str):
            raise ProtocolError("mark without a 'name'")
        return Mark(sid, name)
    if kind in ("stop", "closed"):
        body = _get(document, "stop")
        reason = _get(body, "reason") if isinstance(body, Mapping) else None
        return Stop(sid, str(reason) if reason else "stopped")
    if kind == "clear":
        return Clear(sid)
    raise ProtocolError(f"unknown event {event!r}")


def _parse_media(document: Mapping[str, Any]) -> Media | None:
    """A media frame spelt as Exotel spells it, read without ``_parse_any``'s fallbacks.

    Nearly every frame of a call is one of these. Anything else (another event, other
    spellings, a missing or odd field) is None, and ``_parse_any`` reads it instead; for the
    frames this takes, both give the same message or the same refusal.
    """
    if document.get("event") != "media":
        return None
    body = document.get("media")
    sid = document.get("stream_sid")
    if type(body) is not dict or type(sid) is not str or not sid:
        return None
    payload, chunk, timestamp = body.get("payload"), body.get("chunk"), body.get("timestamp")
    if type(payload) is not str or type(chunk) is not str or type(timestamp) is not str:
        return None
    if not chunk or not timestamp:
        return None
    return Media(sid, decode_audio(payload), int(chunk), int(timestamp))


def _get(mapping: Mapping[str, Any], key: str) -> Any:
    """A key as Exotel spells it, or capitalised as some bridges do."""
    if key in mapping:
        return mapping[key]
    return mapping.get(key[:1].upper() + key[1:])


def _section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    body = _get(document, name)
    if not isinstance(body, Mapping):
        payload = _get(document, "payload")  # some bridges put the section under 'Payload'
        if isinstance(payload, Mapping):
            return payload
        raise ProtocolError(f"'{name}' message without its '{name}' object")
    return body


def _stream_sid(document: Mapping[str, Any]) -> str:
    for source in (document, _get(document, "start"), _get(document, "media")):
        if isinstance(source, Mapping):
            for key in ("stream_sid", "streamSid", "StreamSid"):
                value = source.get(key)
                if value not in (None, ""):
                    return str(value)
    return ""


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ProtocolError("a number was expected, not a boolean")
    return int(value)


def _start(document: Mapping[str, Any], sid: str) -> Start:
    body = _section(document, "start")
    custom = _get(body, "custom_parameters") or _get(body, "customParameters") or {}
    if not isinstance(custom, Mapping):
        raise ProtocolError("'custom_parameters' must be an object")
    media_format = _get(body, "media_format") or _get(body, "mediaFormat") or {}
    if not isinstance(media_format, Mapping):
        raise ProtocolError("'media_format' must be an object")
    rate = _int(_get(media_format, "sample_rate")) or DEFAULT_SAMPLE_RATE
    return Start(
        stream_sid=sid,
        call_sid=str(_get(body, "call_sid") or _get(body, "callSid") or ""),
        account_sid=str(_get(body, "account_sid") or _get(body, "accountSid") or ""),
        from_number=str(_get(body, "from") or ""),
        to_number=str(_get(body, "to") or ""),
        custom_parameters={str(k): str(v) for k, v in list(custom.items())[:MAX_CUSTOM_PARAMETERS]},
        sample_rate=check_sample_rate(rate),
        encoding=str(_get(media_format, "encoding") or "raw"),
    )


def check_sample_rate(rate: int) -> int:
    if rate not in SAMPLE_RATES:
        raise ProtocolError(f"sample rate {rate} is not one of {SAMPLE_RATES}")
    return rate


def sample_rate_from_query(query: Mapping[str, str]) -> int:
    """``?sample-rate=`` (or ``sample_rate``) on the socket URL; 8 kHz when absent."""
    raw = query.get("sample-rate") or query.get("sample_rate")
    if raw is None:
        return DEFAULT_SAMPLE_RATE
    if not raw.isdigit():
        raise ProtocolError(f"sample rate {raw!r} is not a number")
    return check_sample_rate(int(raw))


def decode_audio(payload: str) -> bytes:
    try:
        audio = pybase64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"payload is not valid base64: {exc}") from None
    if len(audio) % 2:
        raise ProtocolError(f"PCM16 audio must be whole samples; got {len(audio)} bytes")
    return audio


# --- Exotel → bot (what the sandbox sends) ------------------------------------------------


def connected_message() -> str:
    return _text({"event": "connected"})


def start_message(sequence: int, start: Start) -> str:
    """``start`` as Exotel sends it: the stream_sid at the top level and inside ``start``,
    numbers as strings, the bit rate of PCM16 in kbit/s (128 at 8 kHz)."""
    return _text(
        {
            "event": "start",
            "sequence_number": str(sequence),
            "stream_sid": start.stream_sid,
            "start": {
                "stream_sid": start.stream_sid,
                "call_sid": start.call_sid,
                "account_sid": start.account_sid,
                "from": start.from_number,
                "to": start.to_number,
                "custom_parameters": start.custom_parameters,
                "media_format": {
                    "encoding": start.encoding,
                    "sample_rate": str(start.sample_rate),
                    "bit_rate": str(start.sample_rate * 16 // 1000),
                },
            },
        }
    )


def inbound_media_message(
    sequence: int, stream_sid: str, audio: bytes, *, chunk: int, timestamp_ms: int
) -> str:
    """The caller's audio, as Exotel sends it: with its ``sequence_number``."""
    payload = pybase64.b64encode_as_string(audio)
    return (
        f'{{"event":"media","sequence_number":"{sequence:d}","stream_sid":{_text(stream_sid)},'
        f'"media":{{"chunk":"{chunk:d}","timestamp":"{timestamp_ms:d}","payload":"{payload}"}}}}'
    )


def mark_echo_message(sequence: int, stream_sid: str, name: str) -> str:
    """Exotel's echo of a bot's mark, once the audio before it has played."""
    return _text(
        {
            "event": "mark",
            "sequence_number": str(sequence),
            "stream_sid": stream_sid,
            "mark": {"name": name},
        }
    )


def stop_message(
    sequence: int, stream_sid: str, *, call_sid: str, account_sid: str, reason: str
) -> str:
    return _text(
        {
            "event": "stop",
            "sequence_number": str(sequence),
            "stream_sid": stream_sid,
            "stop": {"call_sid": call_sid, "account_sid": account_sid, "reason": reason},
        }
    )


# --- bot → Exotel (what the media core sends) -----------------------------------------------


def _text(document: Mapping[str, Any] | str) -> str:
    return orjson.dumps(document).decode()


def media_message(stream_sid: str, audio: bytes, *, chunk: int, timestamp_ms: int) -> str:
    return media_text(media_prefix(stream_sid), audio, chunk=chunk, timestamp_ms=timestamp_ms)


# A call sends five media messages a second that differ only in their numbers and audio, so
# a player writes the stream's part once (``media_prefix``) and each message from a template
# (``media_text``): numbers and base64 never need JSON escaping.


def media_prefix(stream_sid: str) -> str:
    """The start of every media message of one stream, up to its ``media`` object. A stream
    whose ``start`` named no ``stream_sid`` gets messages without one, not an empty one."""
    if not stream_sid:
        return '{"event":"media","media":'
    return '{"event":"media","stream_sid":' + _text(stream_sid) + ',"media":'


def media_text(prefix: str, audio: bytes, *, chunk: int, timestamp_ms: int) -> str:
    """A whole media message, from its stream's ``media_prefix``."""
    payload = pybase64.b64encode_as_string(audio)
    return f'{prefix}{{"chunk":"{chunk:d}","timestamp":"{timestamp_ms:d}","payload":"{payload}"}}}}'


def _addressed(event: str, stream_sid: str) -> dict[str, Any]:
    return {"event": event, "stream_sid": stream_sid} if stream_sid else {"event": event}


def mark_message(stream_sid: str, name: str) -> str:
    return _text({**_addressed("mark", stream_sid), "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return _text(_addressed("clear", stream_sid))


def chunk_bytes(sample_rate: int) -> int:
    """200 ms of audio: the smallest chunk that is both ≥ 3,200 bytes and 320-aligned
    at every supported rate."""
    return max(MIN_CHUNK_BYTES, sample_rate * 2 // 5)


def duration_seconds(audio_bytes: int, sample_rate: int) -> float:
    return audio_bytes / (2 * sample_rate)


def pad_to_chunk(audio: bytes, size: int) -> bytes:
    """Silence appended so a final chunk is whole: Exotel plays misaligned audio with gaps."""
    return audio + b"\x00" * (size - len(audio)) if len(audio) < size else audio
