"""Calls/connect's parameters, read and checked as Exotel does; no I/O here.

One endpoint, three kinds of call (exotel-facts §3.2; Exotel's Connect Voice AI OpenAPI):

- two numbers: ``From``, ``To``, ``CallerId``;
- a flow ("Connect Voice AI with Flow" when the flow holds a Voicebot applet): ``From``,
  ``CallerId``, ``Url`` (an Exotel flow URL, nothing else);
- Connect Voice AI: ``From``, ``CallerId``, ``StreamUrl`` and ``StreamType=bidirectional``; the
  answered call streams straight to the bot, and the bot closing the socket ends the call.

Names are read in either of the casings Exotel's documents use (``StreamUrl`` and
``streamurl``). A parameter the sandbox does not implement is refused, never ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_TIME_LIMIT_SECONDS = 14_400
MAX_CUSTOM_FIELD_CHARS = 128
MAX_STREAM_URL_CHARS = 600
MAX_STREAM_NAME_CHARS = 32
CALLBACK_EVENTS = ("ringing", "answered", "terminal")

# Every parameter the sandbox implements, as Exotel spells it.
PARAMETERS = (
    "From",
    "To",
    "CallerId",
    "Url",
    "CallType",
    "TimeLimit",
    "TimeOut",
    "Record",
    "RecordingChannels",
    "RecordingFormat",
    "CustomField",
    "StatusCallback",
    "StatusCallbackContentType",
    "StreamUrl",
    "StreamType",
    "StreamName",
)
_BY_LOWER = {name.lower(): name for name in PARAMETERS}
# Exotel's, but not simulated: refused with a reason rather than ignored.
NOT_IMPLEMENTED = ("WaitUrl", "StreamBegin", "StartPlaybackToNew", "StartPlaybackValueNew")
_NOT_IMPLEMENTED_LOWER = {name.lower(): name for name in NOT_IMPLEMENTED}
# StatusCallbackEvents[0], StatusCallbackEvents[] or a bare, repeated StatusCallbackEvents.
_EVENTS = re.compile(r"^statuscallbackevents(\[\d*\])?$", re.IGNORECASE)


class Refused(Exception):
    """A request Exotel would refuse: the HTTP status and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ConnectRequest:
    fields: dict[str, str]  # by Exotel's spelling
    events: list[str] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        return self.fields.get(name) or None

    @property
    def kind(self) -> str:
        """``stream``, ``flow`` or ``numbers``."""
        if self.get("StreamUrl") or self.get("StreamType"):
            return "stream"
        return "flow" if self.get("Url") else "numbers"

    @property
    def time_limit(self) -> int | None:
        value = self.get("TimeLimit")
        return int(value) if value else None


def read(form: list[tuple[str, str]]) -> ConnectRequest:
    """The request's parameters by Exotel's spelling; ``Refused`` for a name the sandbox does
    not know or implement, or one given twice in two casings."""
    request = ConnectRequest(fields={})
    for name, value in form:
        if _EVENTS.match(name):
            request.events.append(value)
            continue
        lowered = name.lower()
        if lowered in _NOT_IMPLEMENTED_LOWER:
            raise Refused(
                400, f"{_NOT_IMPLEMENTED_LOWER[lowered]} is not implemented by the sandbox"
            )
        canonical = _BY_LOWER.get(lowered)
        if canonical is None:
            raise Refused(400, f"Unknown parameter {name}")
        if canonical in request.fields and request.fields[canonical] != value:
            raise Refused(400, f"{canonical} is given twice, with different values")
        request.fields[canonical] = value
    return request


def check(request: ConnectRequest) -> None:
    """``Refused`` (400) with the reason, for a request Exotel would refuse."""
    get = request.get
    kind = request.kind
    required = ["From", "CallerId"]
    if kind == "stream":
        required += ["StreamUrl", "StreamType"]
    missing = [name for name in required if not get(name)]
    if kind == "numbers" and not get("To"):
        missing.append("To, Url or StreamUrl")
    if missing:
        raise Refused(400, f"Missing parameter(s): {', '.join(missing)}")
    if get("To") and get("Url"):
        raise Refused(400, "Send To (connect two numbers) or Url (connect to a flow), not both")
    if kind == "stream":
        _check_stream(request)
    elif get("StreamName"):
        raise Refused(400, "StreamName applies to Connect Voice AI calls (with StreamUrl) only")
    _check_common(request)


def _check_stream(request: ConnectRequest) -> None:
    get = request.get
    if get("Url"):
        raise Refused(
            400,
            "Send Url (a flow) or StreamUrl (Connect Voice AI), not both: with a flow, set the "
            "bot's URL in its Voicebot applet",
        )
    if get("To"):
        raise Refused(400, "Send To (connect two numbers) or StreamUrl (a bot), not both")
    if get("StreamType") != "bidirectional":
        raise Refused(400, "StreamType must be bidirectional")
    url = get("StreamUrl") or ""
    if len(url) > MAX_STREAM_URL_CHARS:
        raise Refused(400, f"StreamUrl must be under {MAX_STREAM_URL_CHARS} characters")
    if not re.match(r"^wss?://[^/?#\s]+", url, re.IGNORECASE):
        raise Refused(400, "StreamUrl must be a ws:// or wss:// URL")
    name = get("StreamName")
    if name is not None and len(name) > MAX_STREAM_NAME_CHARS:
        raise Refused(400, f"StreamName must be at most {MAX_STREAM_NAME_CHARS} characters")


def _check_common(request: ConnectRequest) -> None:
    get = request.get
    custom = get("CustomField")
    if custom is not None and len(custom) > MAX_CUSTOM_FIELD_CHARS:
        raise Refused(400, f"CustomField is longer than {MAX_CUSTOM_FIELD_CHARS} characters")
    time_limit = get("TimeLimit")
    if time_limit is not None and not (
        time_limit.isdigit() and 0 < int(time_limit) <= MAX_TIME_LIMIT_SECONDS
    ):
        raise Refused(
            400, f"TimeLimit must be a whole number of seconds, 1 to {MAX_TIME_LIMIT_SECONDS}"
        )
    time_out = get("TimeOut")
    if time_out is not None and not (time_out.isdigit() and int(time_out) > 0):
        raise Refused(400, "TimeOut must be a whole number of seconds, 1 or more")
    _one_of(request, "Record", ("true", "false"))
    _one_of(request, "RecordingChannels", ("single", "dual"))
    _one_of(request, "RecordingFormat", ("mp3", "mp3-hq"))
    _one_of(request, "CallType", ("trans", "promo"))
    _one_of(request, "StatusCallbackContentType", ("multipart/form-data", "application/json"))
    if not set(request.events) <= set(CALLBACK_EVENTS):
        raise Refused(400, "StatusCallbackEvents may hold terminal, answered and ringing only")


def _one_of(request: ConnectRequest, name: str, allowed: tuple[str, ...]) -> None:
    value = request.get(name)
    if value is not None and value.lower() not in allowed:
        raise Refused(400, f"{name} must be {' or '.join(allowed)}")
