"""Reading Exotel's answers to a call request: JSON first, then XML, never trusting either."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exoplane.exotel.parsing import CallAnswer, parse_call_answer

JSON_CALL = json.dumps(
    {
        "Call": {
            "Sid": "80bfbec2d78bbbf10fb851f4fa165211",
            "ParentCallSid": None,
            "AccountSid": "acme-sid",
            "To": "0XXXXX40682",
            "From": "09876543210",
            "Status": "in-progress",
            "Direction": "outbound-api",
            "Duration": None,
        }
    }
)
XML_CALL = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<TwilioResponse>\n  <Call>\n    <Sid>80bfbec2d78bbbf10fb851f4fa165211</Sid>\n"
    "    <ParentCallSid/>\n    <Status>in-progress</Status>\n"
    "    <Direction>outbound-api</Direction>\n  </Call>\n</TwilioResponse>\n"
)
SID = "80bfbec2d78bbbf10fb851f4fa165211"


@pytest.mark.parametrize(
    "body",
    [
        JSON_CALL,
        XML_CALL,
        '{"call": {"sid": "80bfbec2d78bbbf10fb851f4fa165211", "status": "in-progress"}}',
        '<TwilioResponse xmlns="urn:x"><Call><Sid>80bfbec2d78bbbf10fb851f4fa165211</Sid>'
        "<Status>in-progress</Status></Call></TwilioResponse>",
        "  \n" + JSON_CALL + "\n",
    ],
    ids=["json", "xml", "lowercase-json", "namespaced-xml", "surrounding-whitespace"],
)
def test_a_call_gives_its_sid_and_status(body: str) -> None:
    assert parse_call_answer(body) == CallAnswer(SID, "in-progress", None)


def test_a_call_without_a_status_has_none() -> None:
    assert parse_call_answer('{"Call": {"Sid": "abc"}}') == CallAnswer("abc", None, None)


def test_a_call_without_a_sid_has_none() -> None:
    assert parse_call_answer('{"Call": {"Status": "queued"}}') == CallAnswer(None, "queued", None)


@pytest.mark.parametrize(
    "body",
    [
        '{"RestException": {"Status": 401, "Message": "Authentication failed", "Code": 401}}',
        '{"restexception": {"status": 401, "message": "Authentication failed"}}',
        "<TwilioResponse><RestException><Status>401</Status>"
        "<Message>Authentication failed</Message></RestException></TwilioResponse>",
        '{"RestException": {"Message": "Authentication failed"}, "Call": {"Sid": "abc"}}',
    ],
    ids=["json", "lowercase-json", "xml", "json-with-a-call-too"],
)
def test_a_rest_exception_gives_its_message(body: str) -> None:
    answer = parse_call_answer(body)

    assert answer is not None
    assert answer.error == "Authentication failed"
    assert answer.call_sid is None


@pytest.mark.parametrize(
    "body",
    [
        '{"RestException": {"Status": 400, "Code": "UNAUTHORIZED"}}',
        "<TwilioResponse><RestException><Status>400</Status></RestException></TwilioResponse>",
    ],
    ids=["json", "xml"],
)
def test_a_rest_exception_without_a_message_is_still_an_error(body: str) -> None:
    answer = parse_call_answer(body)

    assert answer is not None
    assert answer.error
    assert answer.call_sid is None


@pytest.mark.parametrize(
    "body",
    [
        '{"Status": "Success"}',
        "{}",
        "<TwilioResponse/>",
        "<TwilioResponse><Call/></TwilioResponse>",
    ],
)
def test_an_answer_without_a_call_has_no_sid_and_no_error(body: str) -> None:
    assert parse_call_answer(body) == CallAnswer(None, None, None)


@pytest.mark.parametrize(
    "body",
    ["", "   ", "OK", "<html><body>Bad gateway", "[1, 2]", "42", "null", '"Call"', "{not json"],
)
def test_garbage_is_neither_a_call_nor_an_error(body: str) -> None:
    assert parse_call_answer(body) is None


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n'
    "<!DOCTYPE lolz [\n"
    ' <!ENTITY lol "lol">\n'
    ' <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
    ' <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">\n'
    ' <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
    ' <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">\n'
    ' <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">\n'
    ' <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">\n'
    ' <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">\n'
    ' <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">\n'
    ' <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">\n'
    "]>\n"
    "<TwilioResponse><Call><Sid>&lol9;</Sid></Call></TwilioResponse>"
)
QUADRATIC_BLOWUP = (
    f'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "{"x" * 50_000}">]>'
    f"<TwilioResponse><Call><Sid>{'&a;' * 50_000}</Sid></Call></TwilioResponse>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
    "<TwilioResponse><Call><Sid>&secret;</Sid></Call></TwilioResponse>"
)


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, QUADRATIC_BLOWUP, EXTERNAL_ENTITY],
    ids=["billion-laughs", "quadratic-blowup", "external-entity"],
)
def test_an_xml_entity_attack_is_refused_without_expanding_it(body: str) -> None:
    started = time.monotonic()

    answer = parse_call_answer(body)

    assert answer is None
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("opening", ["[", '{"Call":'], ids=["arrays", "objects"])
def test_deeply_nested_json_is_garbage_not_a_crash(opening: str) -> None:
    assert parse_call_answer(opening * 100_000) is None


@given(st.text(max_size=300))
def test_any_text_parses_to_an_answer_or_none_without_raising(body: str) -> None:
    answer = parse_call_answer(body)

    assert answer is None or isinstance(answer, CallAnswer)
