"""Reading Exotel v1 Calls answers: JSON first, then XML (parsed with defusedxml)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException


@dataclass(frozen=True, slots=True)
class CallAnswer:
    """What a call request's answer says: the call, or Exotel's reason for refusing it."""

    call_sid: str | None
    status: str | None
    error: str | None


def parse_call_answer(body: str) -> CallAnswer | None:
    """The call (or ``RestException``) in an answer body; None when it is neither JSON nor XML."""
    text = body.strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except RecursionError:  # absurdly nested: not an answer, and not worth more effort
        return None
    except ValueError:
        return _from_xml(text)
    return _from_json(document) if isinstance(document, dict) else None


def _from_json(document: dict[str, Any]) -> CallAnswer:
    error = _field(document, "RestException")
    if isinstance(error, dict):
        message = _field(error, "Message") or _field(error, "message")
        return CallAnswer(None, None, str(message) if message else json.dumps(error))
    call = _field(document, "Call")
    if not isinstance(call, dict):
        return CallAnswer(None, None, None)
    sid, status = _field(call, "Sid"), _field(call, "Status")
    return CallAnswer(str(sid) if sid else None, str(status) if status else None, None)


def _field(mapping: dict[str, Any], name: str) -> Any:
    """A key in either case: some Exotel answers are all lowercase."""
    return mapping[name] if name in mapping else mapping.get(name.lower())


def _from_xml(text: str) -> CallAnswer | None:
    try:
        root = ElementTree.fromstring(text)
    except (ElementTree.ParseError, DefusedXmlException):
        return None
    error = _child(root, "RestException")
    if error is not None:
        message = _text(_child(error, "Message"))
        return CallAnswer(None, None, message or "RestException without a Message")
    call = _child(root, "Call") if _local(root.tag) != "call" else root
    if call is None:
        return CallAnswer(None, None, None)
    return CallAnswer(_text(_child(call, "Sid")), _text(_child(call, "Status")), None)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name.lower():
            return child
    return None


def _text(element: Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip() or None
