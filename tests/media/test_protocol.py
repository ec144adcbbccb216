"""AgentStream messages as exotel-facts §4 shows them, both spellings, and fuzzed input."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exoplane.media.protocol import (
    CHUNK_ALIGNMENT,
    MIN_CHUNK_BYTES,
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    _parse_any,
    _parse_media,
    chunk_bytes,
    clear_message,
    connected_message,
    decode_audio,
    duration_seconds,
    inbound_media_message,
    mark_echo_message,
    mark_message,
    media_message,
    pad_to_chunk,
    parse_message,
    sample_rate_from_query,
    start_message,
    stop_message,
)

SID = "a1b2c3d4e5f6"
AUDIO = bytes(range(256)) * 4  # 1,024 bytes: 512 samples of PCM16
PAYLOAD = base64.b64encode(AUDIO).decode()


def parse(document: Any) -> Any:
    return parse_message(json.dumps(document))


# --- Exotel → bot, as documented ----------------------------------------------------------


def test_connected_is_parsed() -> None:
    assert parse({"event": "connected"}) == Connected(None)


def test_connected_of_the_older_reference_keeps_its_protocol() -> None:
    message = parse({"event": "connected", "protocol": "Exotel Media Stream", "version": "1.0.0"})

    assert message == Connected("Exotel Media Stream")


def test_start_with_string_fields_is_parsed_whole() -> None:
    message = parse(
        {
            "event": "start",
            "sequence_number": "1",
            "stream_sid": SID,
            "start": {
                "stream_sid": SID,
                "call_sid": "CA42",
                "account_sid": "acme",
                "from": "+919876543210",
                "to": "+918047491899",
                "custom_parameters": {"k1": "v1"},
                "media_format": {"encoding": "raw", "sample_rate": "8000", "bit_rate": "128"},
            },
        }
    )

    assert message == Start(
        stream_sid=SID,
        call_sid="CA42",
        account_sid="acme",
        from_number="+919876543210",
        to_number="+918047491899",
        custom_parameters={"k1": "v1"},
        sample_rate=8000,
        encoding="raw",
    )


@pytest.mark.parametrize(
    ("media_format", "rate", "encoding"),
    [
        ({"encoding": "raw", "sample_rate": "8000", "bit_rate": "128"}, 8000, "raw"),
        (
            {"encoding": "audio/x-raw", "sample_rate": "16000", "bit_rate": "16"},
            16000,
            "audio/x-raw",
        ),
        ({"encoding": "linear16", "sample_rate": 24000, "bit_rate": 16}, 24000, "linear16"),
    ],
)
def test_start_reads_every_documented_media_format(
    media_format: dict[str, Any], rate: int, encoding: str
) -> None:
    message = parse({"event": "start", "start": {"stream_sid": SID, "media_format": media_format}})

    assert isinstance(message, Start)
    assert (message.sample_rate, message.encoding) == (rate, encoding)


def test_start_in_camel_case_is_parsed() -> None:
    message = parse(
        {
            "event": "start",
            "streamSid": SID,
            "start": {
                "streamSid": SID,
                "callSid": "CA42",
                "accountSid": "acme",
                "customParameters": {"lang": "hi"},
                "mediaFormat": {"encoding": "raw", "sample_rate": "16000"},
            },
        }
    )

    assert isinstance(message, Start)
    assert (message.stream_sid, message.call_sid, message.account_sid) == (SID, "CA42", "acme")
    assert message.custom_parameters == {"lang": "hi"}
    assert message.sample_rate == 16000


def test_start_without_a_media_format_is_8_khz() -> None:
    message = parse({"event": "start", "start": {"stream_sid": SID}})

    assert isinstance(message, Start)
    assert message.sample_rate == 8000


def test_start_keeps_at_most_three_custom_parameters() -> None:
    custom = {"a": "1", "b": "2", "c": "3", "d": "4"}

    message = parse({"event": "start", "start": {"stream_sid": SID, "custom_parameters": custom}})

    assert isinstance(message, Start)
    assert len(message.custom_parameters) == 3


def test_start_custom_parameter_values_become_strings() -> None:
    custom = {"count": 3, "flag": True}

    message = parse({"event": "start", "start": {"stream_sid": SID, "custom_parameters": custom}})

    assert isinstance(message, Start)
    assert message.custom_parameters == {"count": "3", "flag": "True"}


def test_media_with_string_numbers_is_parsed() -> None:
    message = parse(
        {
            "event": "media",
            "sequence_number": "3",
            "stream_sid": SID,
            "media": {"chunk": "2", "timestamp": "200", "payload": PAYLOAD},
        }
    )

    assert message == Media(SID, AUDIO, chunk=2, timestamp=200)


def test_media_with_integer_numbers_is_parsed() -> None:
    message = parse(
        {
            "event": "media",
            "sequence_number": 3,
            "stream_sid": SID,
            "media": {"chunk": 2, "timestamp": 200, "payload": PAYLOAD},
        }
    )

    assert message == Media(SID, AUDIO, chunk=2, timestamp=200)


def test_media_in_camel_case_is_parsed() -> None:
    message = parse({"event": "media", "streamSid": SID, "media": {"payload": PAYLOAD}})

    assert message == Media(SID, AUDIO)


def test_media_without_a_top_level_stream_sid_is_parsed() -> None:
    message = parse({"event": "media", "media": {"chunk": "1", "payload": PAYLOAD}})

    assert message == Media("", AUDIO, chunk=1)


def test_media_with_empty_chunk_and_timestamp_has_none() -> None:
    message = parse({"event": "media", "media": {"chunk": "", "timestamp": "", "payload": ""}})

    assert message == Media("", b"")


def test_capitalised_event_and_payload_are_understood() -> None:
    message = parse({"Event": "media", "stream_sid": SID, "media": {"Payload": PAYLOAD}})

    assert message == Media(SID, AUDIO)


def test_a_section_under_payload_is_understood() -> None:
    message = parse({"Event": "dtmf", "stream_sid": SID, "Payload": {"digit": "9"}})

    assert message == Dtmf(SID, "9")


def test_event_names_are_case_insensitive() -> None:
    assert parse({"event": "STOP", "stream_sid": SID}) == Stop(SID, "stopped")


@pytest.mark.parametrize("dtmf", [{"digit": "5", "duration": "100"}, {"digit": 5, "duration": 100}])
def test_dtmf_with_string_or_number_fields_is_parsed(dtmf: dict[str, Any]) -> None:
    message = parse({"event": "dtmf", "sequence_number": "7", "stream_sid": SID, "dtmf": dtmf})

    assert message == Dtmf(SID, "5", 100)


@pytest.mark.parametrize("digit", ["*", "#", "0"])
def test_dtmf_keeps_star_hash_and_zero(digit: str) -> None:
    assert parse({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": digit}}) == Dtmf(SID, digit)


def test_mark_is_parsed() -> None:
    message = parse(
        {"event": "mark", "sequence_number": "15", "stream_sid": SID, "mark": {"name": "turn-3"}}
    )

    assert message == Mark(SID, "turn-3")


@pytest.mark.parametrize("reason", ["stopped", "callended", "caller_hangup"])
def test_stop_keeps_its_reason(reason: str) -> None:
    message = parse(
        {
            "event": "stop",
            "sequence_number": "20",
            "stream_sid": SID,
            "stop": {"call_sid": "CA42", "account_sid": "acme", "reason": reason},
        }
    )

    assert message == Stop(SID, reason)


def test_stop_without_a_body_means_stopped() -> None:
    assert parse({"event": "stop", "streamSid": SID}) == Stop(SID, "stopped")


def test_closed_is_a_stop() -> None:
    assert parse({"event": "closed", "stream_sid": SID}) == Stop(SID, "stopped")


def test_a_clear_from_the_peer_is_understood() -> None:
    assert parse({"event": "clear", "streamSid": SID}) == Clear(SID)


def test_bytes_frames_are_parsed_like_text() -> None:
    frame = json.dumps({"event": "mark", "stream_sid": SID, "mark": {"name": "m"}}).encode()

    assert parse_message(frame) == Mark(SID, "m")


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("", id="empty"),
        pytest.param(b"\xff\xfe\xfa", id="not-utf8"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param('"media"', id="a-string"),
        pytest.param("{}", id="no-event"),
        pytest.param('{"event": 7}', id="event-not-a-string"),
        pytest.param('{"event": "hangup"}', id="unknown-event"),
        pytest.param('{"event": "media"}', id="media-without-section"),
        pytest.param('{"event": "media", "media": {}}', id="media-without-payload"),
        pytest.param('{"event": "media", "media": {"payload": 12}}', id="payload-not-a-string"),
        pytest.param('{"event": "media", "media": {"payload": "@@@@"}}', id="bad-base64"),
        pytest.param('{"event": "media", "media": {"payload": "AAE"}}', id="base64-unpadded"),
        pytest.param('{"event": "media", "media": {"payload": "AAEC"}}', id="odd-length-pcm"),
        pytest.param(
            '{"event": "media", "media": {"payload": "", "chunk": "two"}}', id="chunk-not-a-number"
        ),
        pytest.param(
            '{"event": "media", "media": {"payload": "", "chunk": true}}', id="chunk-boolean"
        ),
        pytest.param(
            '{"event": "media", "media": {"payload": "", "timestamp": NaN}}', id="timestamp-nan"
        ),
        pytest.param('{"event": "dtmf", "dtmf": {}}', id="dtmf-without-digit"),
        pytest.param('{"event": "dtmf", "dtmf": {"digit": ""}}', id="dtmf-empty-digit"),
        pytest.param('{"event": "dtmf", "dtmf": {"digit": [1]}}', id="dtmf-digit-a-list"),
        pytest.param('{"event": "mark", "mark": {}}', id="mark-without-name"),
        pytest.param('{"event": "mark", "mark": "m"}', id="mark-not-an-object"),
        pytest.param('{"event": "start"}', id="start-without-section"),
        pytest.param(
            '{"event": "start", "start": {"media_format": {"sample_rate": "44100"}}}',
            id="start-unsupported-rate",
        ),
        pytest.param(
            '{"event": "start", "start": {"custom_parameters": ["a"]}}', id="custom-not-an-object"
        ),
        pytest.param('{"event": "start", "start": {"media_format": "raw"}}', id="format-a-string"),
    ],
)
def test_malformed_frames_raise_protocol_error(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_message(frame)


def test_audio_must_be_whole_samples() -> None:
    with pytest.raises(ProtocolError, match="whole samples"):
        decode_audio(base64.b64encode(b"\x00\x01\x02").decode())


def test_an_infinite_number_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_message('{"event": "media", "media": {"payload": "", "chunk": 1e999}}')


def test_deeply_nested_json_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_message("[" * 100_000)


# --- the socket URL -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "rate"),
    [
        ({}, 8000),
        ({"sample-rate": "8000"}, 8000),
        ({"sample-rate": "16000"}, 16000),
        ({"sample-rate": "24000"}, 24000),
        ({"sample_rate": "16000"}, 16000),
    ],
)
def test_sample_rate_comes_from_the_query(query: dict[str, str], rate: int) -> None:
    assert sample_rate_from_query(query) == rate


@pytest.mark.parametrize("raw", ["44100", "0", "16k", "-8000", "8000.0"])
def test_unsupported_sample_rates_are_refused(raw: str) -> None:
    with pytest.raises(ProtocolError):
        sample_rate_from_query({"sample-rate": raw})


# --- bot → Exotel -------------------------------------------------------------------------


def test_media_message_has_exotels_shape() -> None:
    document = json.loads(media_message(SID, AUDIO, chunk=3, timestamp_ms=400))

    assert document == {
        "event": "media",
        "stream_sid": SID,
        "media": {"chunk": "3", "timestamp": "400", "payload": PAYLOAD},
    }


def test_media_message_round_trips() -> None:
    message = parse_message(media_message(SID, AUDIO, chunk=3, timestamp_ms=400))

    assert message == Media(SID, AUDIO, chunk=3, timestamp=400)


def test_mark_message_round_trips() -> None:
    text = mark_message(SID, "greeting")

    assert json.loads(text) == {"event": "mark", "stream_sid": SID, "mark": {"name": "greeting"}}
    assert parse_message(text) == Mark(SID, "greeting")


def test_clear_message_round_trips() -> None:
    text = clear_message(SID)

    assert json.loads(text) == {"event": "clear", "stream_sid": SID}
    assert parse_message(text) == Clear(SID)


def test_messages_for_a_stream_without_a_sid_carry_none_rather_than_an_empty_one() -> None:
    media = json.loads(media_message("", AUDIO, chunk=1, timestamp_ms=0))

    assert "stream_sid" not in media
    assert media["media"]["payload"] == PAYLOAD
    assert json.loads(mark_message("", "m")) == {"event": "mark", "mark": {"name": "m"}}
    assert json.loads(clear_message("")) == {"event": "clear"}


@given(
    audio=st.binary(max_size=4096).map(lambda raw: raw[: len(raw) - len(raw) % 2]),
    chunk=st.integers(min_value=0, max_value=2**31),
    timestamp=st.integers(min_value=0, max_value=2**40),
    sid=st.text(min_size=1, max_size=40),
)
def test_any_media_message_round_trips(audio: bytes, chunk: int, timestamp: int, sid: str) -> None:
    message = parse_message(media_message(sid, audio, chunk=chunk, timestamp_ms=timestamp))

    assert message == Media(sid, audio, chunk=chunk, timestamp=timestamp)


@given(name=st.text(max_size=100), sid=st.text(min_size=1, max_size=40))
def test_any_mark_message_round_trips(name: str, sid: str) -> None:
    assert parse_message(mark_message(sid, name)) == Mark(sid, name)


# --- chunk sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "size"), [(8000, 3200), (16000, 6400), (24000, 9600)])
def test_outbound_chunks_are_200_ms_at_every_rate(rate: int, size: int) -> None:
    assert chunk_bytes(rate) == size
    assert size % CHUNK_ALIGNMENT == 0
    assert size >= MIN_CHUNK_BYTES
    assert duration_seconds(size, rate) == pytest.approx(0.2)


def test_a_short_chunk_is_padded_with_silence() -> None:
    padded = pad_to_chunk(b"\x01\x02" * 10, 3200)

    assert len(padded) == 3200
    assert padded[:20] == b"\x01\x02" * 10
    assert set(padded[20:]) == {0}


def test_a_whole_chunk_is_not_padded() -> None:
    assert pad_to_chunk(b"\x07" * 3200, 3200) == b"\x07" * 3200


# --- fuzz ---------------------------------------------------------------------------------

# Hypothesis draws infinities rarely; listed here, the field fuzz below reaches int(inf) within
# a few examples (it found the OverflowError that int() used to let out).
edge_numbers = st.sampled_from(
    [0, -1, 2**63, 10**30, 0.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan")]
)
numbers = st.integers() | st.floats() | edge_numbers
scalars = st.none() | st.booleans() | numbers | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
# Values near what Exotel sends, so that fuzzing reaches past the first check of each field.
plausible = st.one_of(
    numbers, numbers, scalars, st.sampled_from(["", "0", "5", "#", "8000", "16000", "24000"])
)
payloads = st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode()) | st.sampled_from(
    ["", "AAE", "AAE=", "@@@@", "AA\nAA"]
)
sids = {"stream_sid": plausible, "streamSid": plausible, "StreamSid": plausible}


def _section(
    required: dict[str, st.SearchStrategy[Any]] | None = None,
    /,
    **fields: st.SearchStrategy[Any],
) -> st.SearchStrategy[Any]:
    """An object with ``required`` and any of ``fields``; now and then something else."""
    complete = st.fixed_dictionaries(required or {}, optional=fields)
    partial = st.fixed_dictionaries({}, optional={**(required or {}), **fields})
    return st.one_of(complete, complete, complete, partial, json_values)


sections: dict[str, st.SearchStrategy[Any]] = {
    "connected": st.just(None),
    "start": _section(
        **sids,
        call_sid=plausible,
        callSid=plausible,
        account_sid=plausible,
        to=plausible,
        custom_parameters=st.dictionaries(st.text(max_size=5), json_values, max_size=5)
        | json_values,
        customParameters=json_values,
        media_format=_section(sample_rate=plausible, encoding=plausible, bit_rate=plausible),
        mediaFormat=_section(sample_rate=plausible),
    ),
    "media": _section(
        {"payload": payloads}, Payload=payloads, chunk=plausible, timestamp=plausible, **sids
    ),
    "dtmf": _section({"digit": plausible}, duration=plausible),
    "mark": _section({"name": plausible}),
    "stop": _section(reason=plausible, call_sid=plausible),
    "clear": st.just(None),
}
events = st.sampled_from([*sections, *sections, "closed", "Media", "DTMF", "hangup", ""])


@st.composite
def message_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """An AgentStream-like document: an event, its section (maybe misnamed), a stream sid."""
    event = draw(events)
    kind = {"closed": "stop"}.get(event.lower(), event.lower())
    section_key = draw(st.sampled_from([kind, kind, kind, kind.capitalize(), "Payload", "media"]))
    document: dict[str, Any] = {draw(st.sampled_from(["event", "Event"])): event}
    section = draw(sections.get(kind, json_values))
    if section is not None:
        document[section_key or "x"] = section
    document.update(draw(st.fixed_dictionaries({}, optional=sids)))
    return document


# A valid message of each kind, and the path of each field in it.
FIELD_PATHS: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    *(({"event": "connected"}, path) for path in [("protocol",), ("event",)]),
    *(
        (
            {
                "event": "start",
                "stream_sid": SID,
                "start": {
                    "stream_sid": SID,
                    "call_sid": "CA42",
                    "account_sid": "acme",
                    "from": "+919876543210",
                    "to": "+918047491899",
                    "custom_parameters": {"k1": "v1"},
                    "media_format": {"encoding": "raw", "sample_rate": "8000", "bit_rate": "128"},
                },
            },
            path,
        )
        for path in [
            ("stream_sid",),
            ("start",),
            ("start", "stream_sid"),
            ("start", "call_sid"),
            ("start", "account_sid"),
            ("start", "from"),
            ("start", "to"),
            ("start", "custom_parameters"),
            ("start", "custom_parameters", "k1"),
            ("start", "media_format"),
            ("start", "media_format", "encoding"),
            ("start", "media_format", "sample_rate"),
        ]
    ),
    *(
        (
            {
                "event": "media",
                "stream_sid": SID,
                "media": {"chunk": "2", "timestamp": "200", "payload": PAYLOAD},
            },
            path,
        )
        for path in [
            ("stream_sid",),
            ("media",),
            ("media", "chunk"),
            ("media", "timestamp"),
            ("media", "payload"),
        ]
    ),
    *(
        (
            {"event": "dtmf", "stream_sid": SID, "dtmf": {"digit": "5", "duration": "100"}},
            path,
        )
        for path in [("dtmf",), ("dtmf", "digit"), ("dtmf", "duration")]
    ),
    *(
        ({"event": "mark", "stream_sid": SID, "mark": {"name": "m"}}, path)
        for path in [("mark",), ("mark", "name")]
    ),
    *(
        ({"event": "stop", "stream_sid": SID, "stop": {"reason": "callended"}}, path)
        for path in [("stop",), ("stop", "reason"), ("stream_sid",)]
    ),
]


def _replaced(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def _parses_or_refuses(frame: str | bytes) -> None:
    try:
        parse_message(frame)
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(value=json_values)
def test_any_json_value_parses_or_raises_protocol_error(value: Any) -> None:
    _parses_or_refuses(json.dumps(value))


@settings(max_examples=400)
@given(document=message_shaped())
def test_any_message_shaped_document_parses_or_raises_protocol_error(
    document: dict[str, Any],
) -> None:
    _parses_or_refuses(json.dumps(document))


@settings(max_examples=300)
@given(text=st.text())
def test_any_text_parses_or_raises_protocol_error(text: str) -> None:
    _parses_or_refuses(text)


@settings(max_examples=300)
@given(raw=st.binary())
def test_any_bytes_parse_or_raise_protocol_error(raw: bytes) -> None:
    _parses_or_refuses(raw)


@settings(max_examples=400)
@given(place=st.sampled_from(FIELD_PATHS), value=json_values)
def test_any_value_in_any_field_parses_or_raises_protocol_error(
    place: tuple[dict[str, Any], tuple[str, ...]], value: Any
) -> None:
    document, path = place

    _parses_or_refuses(json.dumps(_replaced(document, path, value)))


# --- the media fast path --------------------------------------------------------------------
# Media frames are read by a path of their own, which gives up (None) on anything that is not
# spelt as Exotel spells it. Wherever it does not give up it must agree with the general path.


def _outcome(parser: Callable[[dict[str, Any]], Any], document: dict[str, Any]) -> Any:
    try:
        return parser(document)
    except (ProtocolError, TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        return type(exc)


def _agrees_with_the_general_path(document: dict[str, Any]) -> bool:
    """Whether the fast path took ``document`` (and asserts it agreed if it did)."""
    document = json.loads(json.dumps(document))  # as the parser sees it: decoded JSON
    fast = _outcome(_parse_media, document)
    if fast is None:
        return False
    assert fast == _outcome(_parse_any, document), document
    return True


def test_the_fast_path_takes_exotels_media_frames() -> None:
    document = {
        "event": "media",
        "stream_sid": SID,
        "media": {"chunk": "2", "timestamp": "200", "payload": PAYLOAD},
    }
    assert _agrees_with_the_general_path(document)
    assert _parse_media(document) == Media(SID, AUDIO, 2, 200)


@pytest.mark.parametrize(
    "document",
    [
        {"Event": "media", "stream_sid": SID, "media": {"payload": PAYLOAD}},
        {"event": "Media", "stream_sid": SID, "media": {"payload": PAYLOAD}},
        {"event": "media", "streamSid": SID, "media": {"payload": PAYLOAD}},
        {"event": "media", "stream_sid": "", "media": {"payload": PAYLOAD, "stream_sid": SID}},
        {"event": "media", "stream_sid": 42, "media": {"payload": PAYLOAD}},
        {"event": "media", "stream_sid": SID, "Payload": {"payload": PAYLOAD}},
        {"event": "media", "stream_sid": SID, "media": {"Payload": PAYLOAD}},
        {"event": "dtmf", "stream_sid": SID, "dtmf": {"digit": "5"}},
    ],
    ids=[
        "Event",
        "Media",
        "streamSid",
        "sid-in-section",
        "numeric-sid",
        "section-as-Payload",
        "Payload",
        "dtmf",
    ],
)
def test_other_spellings_go_the_general_way(document: dict[str, Any]) -> None:
    assert _parse_media(document) is None
    assert parse(document) == _parse_any(document)


MEDIA_FIELD_PATHS = [place for place in FIELD_PATHS if place[0]["event"] == "media"]


@settings(max_examples=400)
@given(place=st.sampled_from(MEDIA_FIELD_PATHS), value=json_values | plausible | payloads)
def test_the_fast_path_agrees_whatever_is_in_a_field(
    place: tuple[dict[str, Any], tuple[str, ...]], value: Any
) -> None:
    document, path = place
    _agrees_with_the_general_path(_replaced(document, path, value))


# Media frames near what the fast path takes, with the other spellings of each field mixed in.
media_fields = {
    name: plausible | payloads
    for name in ("Payload", "chunk", "Chunk", "timestamp", "Timestamp", "streamSid")
}


@st.composite
def media_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly a media frame the fast path takes, now and then one with something else in a
    field, always with the other spellings of fields mixed in."""

    def mostly(likely: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
        return draw(likely if draw(st.sampled_from([True, True, True, False])) else other)

    media = draw(st.fixed_dictionaries({}, optional=media_fields))
    media["payload"] = mostly(payloads, plausible)
    document = {
        "event": draw(st.sampled_from(["media", "media", "media", "Media", "dtmf"])),
        "stream_sid": mostly(st.text(min_size=1, max_size=8), plausible),
        "media": mostly(st.just(media), json_values),
    }
    document.update(draw(st.fixed_dictionaries({}, optional={"streamSid": plausible})))
    return document


@settings(max_examples=400)
@given(document=message_shaped() | media_shaped())
def test_the_fast_path_agrees_on_any_message_shaped_document(document: dict[str, Any]) -> None:
    _agrees_with_the_general_path(document)


# --- Exotel → bot: the sandbox's side, read back by the media core's parser ----------------


def test_exotels_start_has_its_documented_shape_and_parses_back() -> None:
    start = Start(SID, "CA42", "acme", "+919876543210", "+918047491899", {"k1": "v1"}, 16000)

    text = start_message(1, start)

    assert json.loads(text) == {
        "event": "start",
        "sequence_number": "1",
        "stream_sid": SID,
        "start": {
            "stream_sid": SID,
            "call_sid": "CA42",
            "account_sid": "acme",
            "from": "+919876543210",
            "to": "+918047491899",
            "custom_parameters": {"k1": "v1"},
            "media_format": {"encoding": "raw", "sample_rate": "16000", "bit_rate": "256"},
        },
    }
    assert parse_message(text) == start


def test_exotels_other_messages_parse_back() -> None:
    media = inbound_media_message(7, SID, AUDIO, chunk=3, timestamp_ms=300)
    stop = stop_message(9, SID, call_sid="CA42", account_sid="acme", reason="callended")

    assert parse_message(connected_message()) == Connected()
    assert json.loads(media)["sequence_number"] == "7"
    assert parse_message(media) == Media(SID, AUDIO, chunk=3, timestamp=300)
    assert parse_message(mark_echo_message(8, SID, "turn-1")) == Mark(SID, "turn-1")
    assert json.loads(stop)["stop"] == {
        "call_sid": "CA42",
        "account_sid": "acme",
        "reason": "callended",
    }
    assert parse_message(stop) == Stop(SID, "callended")


@given(
    audio=st.binary(max_size=4096).map(lambda raw: raw[: len(raw) - len(raw) % 2]),
    sequence=st.integers(min_value=1, max_value=2**31),
    sid=st.text(min_size=1, max_size=40),
)
def test_any_inbound_media_message_round_trips(audio: bytes, sequence: int, sid: str) -> None:
    text = inbound_media_message(sequence, sid, audio, chunk=sequence, timestamp_ms=100)

    assert json.loads(text)["sequence_number"] == str(sequence)
    assert parse_message(text) == Media(sid, audio, chunk=sequence, timestamp=100)
