"""Bounds every input shares: integer ranges, and no NUL character in any string.

Integers are stored as 64-bit integers, and PostgreSQL keeps
no NUL in text: both would otherwise reach the database and fail there. The integer types are
used by every endpoint parameter; the NUL checks run once per request in the middleware.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Iterator
from typing import Annotated, Any
from urllib.parse import parse_qsl

from annotated_types import Ge, Le
from pydantic import AfterValidator
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

INT64_MAX = 2**63 - 1

# A row id, cursor or offset: what a 64-bit database column holds, never negative.
Int64 = Annotated[int, Ge(0), Le(INT64_MAX)]

_UUID = re.compile(r"^[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$")


def normalise_id(value: str) -> str:
    """A UUID in lower case, as ids are generated, so that any letter case finds the row;
    any other id as it is."""
    return value.lower() if _UUID.match(value) else value


# An id in a path: customers, apps, DIDs and calls.
PathId = Annotated[str, AfterValidator(normalise_id)]

NUL = "\x00"
_JSON_NUL = b"\\u0000"
_FORM_NUL = b"%00"
# Echoed inputs (field names, paths, ids) are cut to this many characters in error messages.
MAX_ECHO = 200


def echo(value: str, limit: int = MAX_ECHO) -> str:
    """``value`` for an error message: cut to ``limit`` characters, with the cut marked."""
    return value if len(value) <= limit else value[:limit] + "..."


class InputRefused(HTTPException):
    """A request refused before it reaches an endpoint, naming what was wrong with it.

    An ``HTTPException`` so that it passes through FastAPI's body reading untouched.
    """

    def __init__(self, message: str, *, code: str = "validation_error", field: str) -> None:
        super().__init__(400, message)
        self.code = code
        self.field = field


def check_request_head(path: str, query_string: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Refuse a NUL in the (percent-decoded) path, query or headers, and a repeated
    ``Authorization`` header, whose first value would otherwise win silently."""
    if NUL in path:
        raise InputRefused("The path must not contain a NUL character", field="path")
    if b"\x00" in query_string or _FORM_NUL in query_string.upper():
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if NUL in name or NUL in value:
                field = echo(name.replace(NUL, "\\0"))
                raise InputRefused(
                    f"Query parameter '{field}' must not contain a NUL character", field=field
                )
    authorizations = 0
    for header, raw in headers:
        if b"\x00" in raw:
            field = echo(header.decode("latin-1"))
            raise InputRefused(f"Header '{field}' must not contain a NUL character", field=field)
        if header == b"authorization":
            authorizations += 1
            if authorizations > 1:
                raise InputRefused(
                    "Send one Authorization header, not several",
                    code="duplicate_header",
                    field="Authorization",
                )


def body_may_hold_nul(body: bytes) -> bool:
    """A cheap test, true for every JSON or form body with a NUL in a string."""
    return _JSON_NUL in body or _FORM_NUL in body.upper() or b"\x00" in body


async def check_body(headers: Headers, body: bytes) -> None:
    """Refuse a NUL in any string of a JSON or form body, naming the field (a file's
    content may hold anything)."""
    if not body_may_hold_nul(body):
        return
    content_type = headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        await _check_multipart(headers, body)
        return
    if "form-urlencoded" in content_type:
        for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
            if NUL in name or NUL in value:
                _refuse_body_nul(name)
        return
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return  # not JSON: the endpoint's own parsing refuses it
    for where in _nul_locations(document, ()):
        _refuse_body_nul(".".join(where))


async def _check_multipart(headers: Headers, body: bytes) -> None:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(headers, stream()).parse()
    except MultiPartException:
        return  # not a valid form: the endpoint's own parsing refuses it
    try:
        for name, value in form.multi_items():
            if NUL in name or (isinstance(value, str) and NUL in value):
                _refuse_body_nul(name)
    finally:
        await form.close()


def _refuse_body_nul(field: str) -> None:
    field = echo(field.replace(NUL, "\\0"))
    noun = f"Field '{field}'" if field else "The request body"
    raise InputRefused(f"{noun} must not contain a NUL character", field=field or "body")


def _nul_locations(value: Any, where: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                yield at
        elif isinstance(item, dict):
            for key, child in item.items():
                if NUL in key:
                    yield (*at, key)
                stack.append((child, (*at, key)))
        elif isinstance(item, list):
            stack.extend((child, (*at, str(index))) for index, child in enumerate(item))
