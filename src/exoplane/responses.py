"""Success envelopes and the JSON response class every endpoint returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.types import Scope

REQUEST_ID = "request_id"

# One encoder for every response: json.dumps() with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def request_id_of(scope: Scope) -> str:
    state: Mapping[str, Any] = scope.get("state", {})
    return str(state.get(REQUEST_ID, ""))


class JSONBytesResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode()


def legacy_ok(scope: Scope, data: Any, *, status: int = 200) -> JSONBytesResponse:
    """Exotel's ``{RequestId, Status, Code, Error, Data}`` envelope."""
    body = {
        "RequestId": request_id_of(scope),
        "Status": "Success",
        "Code": status,
        "Error": "",
        "Data": data,
    }
    return JSONBytesResponse(body, status_code=status)


def resource_ok(data: Any, *, status: int = 200) -> JSONBytesResponse:
    """The resource-style ``{"success": true, "data": ...}`` envelope of seeds 02 and 03."""
    return JSONBytesResponse({"success": True, "data": data}, status_code=status)


def legacy_time(moment: datetime) -> str:
    """RFC 3339 with an offset and whole seconds, as Exotel's envelope endpoints write it."""
    return moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "+00:00"


def resource_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as the resource-style endpoints write it."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
