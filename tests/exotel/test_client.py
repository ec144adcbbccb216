"""``ExotelClient`` against ``httpx.MockTransport``: the request, 429s, failures, secrets."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import parse_qsl

import httpx
import pytest

from exoplane.exotel.client import (
    CUSTOM_FIELD_LIMIT,
    ExotelBadAnswer,
    ExotelClient,
    ExotelCredentials,
    ExotelError,
    ExotelHTTPError,
    ExotelRateLimited,
    ExotelRejected,
    ExotelTimeout,
    ExotelUnreachable,
    PlacedCall,
    normalise_base_url,
)

API_KEY = "exotel-key-9c1f2e7a5b"
API_TOKEN = "exotel-token-4d8e1a6c3f"
CREDENTIALS = ExotelCredentials("acme-sid", API_KEY, API_TOKEN, "https://api.in.exotel.com")
CALL = httpx.Response(200, json={"Call": {"Sid": "sid-1", "Status": "queued"}})

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Answers each request with the next scripted response (or raises it) and keeps them."""

    def __init__(self, *script: httpx.Response | Exception) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        outcome = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(outcome, Exception):
            raise outcome
        # A fresh response each time: one response object cannot answer two requests.
        return httpx.Response(outcome.status_code, headers=outcome.headers, content=outcome.content)

    def client(self, **options: float) -> ExotelClient:
        return ExotelClient(httpx.AsyncClient(transport=httpx.MockTransport(self)), **options)

    def form(self, index: int = 0) -> dict[str, str]:
        return dict(parse_qsl(self.requests[index].content.decode(), keep_blank_values=True))


async def connect(
    client: ExotelClient, *, custom_field: str | None = "cxb-test:did-1"
) -> PlacedCall:
    try:
        return await client.connect_to_flow(
            CREDENTIALS,
            customer_number="+919876543210",
            caller_id="+918047491899",
            flow_url="http://my.exotel.com/acme-sid/exoml/start_voice/926",
            custom_field=custom_field,
        )
    finally:
        await client.aclose()


# --- normalise_base_url -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("api.in.exotel.com", "https://api.in.exotel.com"),
        ("https://api.exotel.com/", "https://api.exotel.com"),
        ("https://api.exotel.com", "https://api.exotel.com"),
        ("https://api.in.exotel.com/v1/Accounts/acme-sid/", "https://api.in.exotel.com"),
        ("https://api.exotel.com/some/path?query=1#fragment", "https://api.exotel.com"),
        ("http://127.0.0.1:8081/", "http://127.0.0.1:8081"),
        ("127.0.0.1:8081", "https://127.0.0.1:8081"),
        ("  https://api.exotel.com/  ", "https://api.exotel.com"),
        ("", "https://api.exotel.com"),
        ("   ", "https://api.exotel.com"),
        (None, "https://api.exotel.com"),
    ],
)
def test_normalise_base_url(raw: str | None, normalised: str) -> None:
    assert normalise_base_url(raw) == normalised


@pytest.mark.parametrize("raw", ["https://", "http:///path"])
def test_a_base_url_without_a_host_is_a_value_error(raw: str) -> None:
    with pytest.raises(ValueError, match="no host"):
        normalise_base_url(raw)


# --- the request --------------------------------------------------------------------------


async def test_connect_to_flow_posts_the_form_with_basic_auth_to_calls_connect() -> None:
    recorder = Recorder(CALL)

    placed = await connect(recorder.client())

    assert placed == PlacedCall("sid-1", "queued")
    [request] = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://api.in.exotel.com/v1/Accounts/acme-sid/Calls/connect"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    expected_auth = base64.b64encode(f"{API_KEY}:{API_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected_auth}"
    assert recorder.form() == {
        "From": "+919876543210",
        "CallerId": "+918047491899",
        "Url": "http://my.exotel.com/acme-sid/exoml/start_voice/926",
        "CallType": "trans",
        "CustomField": "cxb-test:did-1",
    }


async def test_a_custom_field_of_200_characters_is_sent_as_its_first_128() -> None:
    recorder = Recorder(CALL)
    custom_field = "cxb-test:" + "d" * 191

    await connect(recorder.client(), custom_field=custom_field)

    assert len(custom_field) == 200
    assert recorder.form()["CustomField"] == custom_field[:128]
    assert CUSTOM_FIELD_LIMIT == 128


async def test_no_custom_field_is_sent_when_there_is_none() -> None:
    recorder = Recorder(CALL)

    await connect(recorder.client(), custom_field=None)

    assert "CustomField" not in recorder.form()


async def test_connect_two_numbers_asks_for_json_status_callbacks() -> None:
    recorder = Recorder(CALL)
    client = recorder.client()

    await client.connect_two_numbers(
        CREDENTIALS,
        first="sip:agent_001",
        second="+919876543210",
        caller_id="+918047491899",
        custom_field="exoplane:call-1",
        status_callback="https://exoplane.example.com/v2/integrations/call/status/call-1?sig=s",
    )
    await client.aclose()

    assert recorder.form() == {
        "From": "sip:agent_001",
        "To": "+919876543210",
        "CallerId": "+918047491899",
        "CallType": "trans",
        "CustomField": "exoplane:call-1",
        "StatusCallback": "https://exoplane.example.com/v2/integrations/call/status/call-1?sig=s",
        "StatusCallbackEvents[0]": "answered",
        "StatusCallbackEvents[1]": "terminal",
        "StatusCallbackContentType": "application/json",
    }


async def test_connect_to_stream_posts_connect_voice_ai_with_the_bots_url() -> None:
    recorder = Recorder(CALL)
    client = recorder.client()

    placed = await client.connect_to_stream(
        CREDENTIALS,
        customer_number="+919876543210",
        caller_id="+918047491899",
        stream_url="wss://core.example.com/exotel/echo?sig=s",
        custom_field="cxb-test:did-1",
    )
    await client.aclose()

    assert placed == PlacedCall("sid-1", "queued")
    assert str(recorder.requests[0].url).endswith("/v1/Accounts/acme-sid/Calls/connect")
    assert recorder.form() == {
        "From": "+919876543210",
        "CallerId": "+918047491899",
        "StreamUrl": "wss://core.example.com/exotel/echo?sig=s",
        "StreamType": "bidirectional",
        "CustomField": "cxb-test:did-1",
    }


# --- answers ------------------------------------------------------------------------------


async def test_an_xml_answer_places_the_call() -> None:
    xml = "<TwilioResponse><Call><Sid>sid-x</Sid><Status>ringing</Status></Call></TwilioResponse>"
    recorder = Recorder(httpx.Response(200, text=xml))

    assert await connect(recorder.client()) == PlacedCall("sid-x", "ringing")


async def test_a_call_without_a_status_is_reported_as_queued() -> None:
    recorder = Recorder(httpx.Response(200, json={"Call": {"Sid": "sid-1"}}))

    assert await connect(recorder.client()) == PlacedCall("sid-1", "queued")


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            httpx.Response(400, json={"RestException": {"Status": 400, "Message": "Bad From"}}),
            ExotelRejected,
            "Bad From",
        ),
        (
            httpx.Response(200, json={"RestException": {"Message": "Insufficient balance"}}),
            ExotelRejected,
            "Insufficient balance",
        ),
        (httpx.Response(500, text="internal error"), ExotelHTTPError, "HTTP 500"),
        (httpx.Response(200, json={"Call": {}}), ExotelBadAnswer, "without a call Sid"),
        (httpx.Response(200, text="OK"), ExotelBadAnswer, "without a call Sid"),
        (httpx.Response(200, text="[" * 100_000), ExotelBadAnswer, "without a call Sid"),
    ],
    ids=[
        "rest-exception",
        "rest-exception-with-200",
        "http-500",
        "no-sid",
        "garbage",
        "deeply-nested-json",
    ],
)
async def test_a_failed_answer_raises_its_exotel_error(
    response: httpx.Response, error: type[ExotelError], message: str
) -> None:
    recorder = Recorder(response)

    with pytest.raises(error, match=message):
        await connect(recorder.client())


# --- 429 ----------------------------------------------------------------------------------


def too_many(retry_after: str) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": retry_after}, text="Too Many Requests")


async def test_a_429_with_retry_after_zero_is_retried_and_then_succeeds() -> None:
    recorder = Recorder(too_many("0"), CALL)

    placed = await connect(recorder.client())

    assert placed.call_sid == "sid-1"
    assert len(recorder.requests) == 2


async def test_a_429_asking_to_wait_beyond_the_budget_is_rate_limited_at_once() -> None:
    recorder = Recorder(too_many("60"))

    with pytest.raises(ExotelRateLimited) as raised:
        await connect(recorder.client(rate_limit_budget=10.0))

    assert raised.value.status == 429
    assert len(recorder.requests) == 1


async def test_repeated_429s_stop_when_the_retry_budget_is_spent() -> None:
    recorder = Recorder(too_many("0.01"))

    with pytest.raises(ExotelRateLimited):
        await connect(recorder.client(rate_limit_budget=0.05))

    assert 2 <= len(recorder.requests) <= 10


# --- transport failures -------------------------------------------------------------------


def raising(exception_type: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception_type("simulated", request=request)

    return handler


@pytest.mark.parametrize("exception_type", [httpx.ReadTimeout, httpx.ConnectTimeout])
async def test_a_timeout_is_an_exotel_timeout(exception_type: type[httpx.TransportError]) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(raising(exception_type)))

    with pytest.raises(ExotelTimeout, match="in time") as raised:
        await connect(ExotelClient(http))

    assert not isinstance(raised.value, httpx.HTTPError)


@pytest.mark.parametrize(
    "exception_type", [httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError]
)
async def test_a_connection_failure_is_exotel_unreachable(
    exception_type: type[httpx.TransportError],
) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(raising(exception_type)))

    with pytest.raises(ExotelUnreachable, match="could not be reached"):
        await connect(ExotelClient(http))


# --- secrets ------------------------------------------------------------------------------


def test_the_credentials_repr_never_shows_the_key_or_token() -> None:
    for text in (repr(CREDENTIALS), str(CREDENTIALS), repr([CREDENTIALS]), f"{CREDENTIALS!r}"):
        assert API_KEY not in text
        assert API_TOKEN not in text
        assert "acme-sid" in text


async def test_no_exotel_error_message_carries_the_key_or_token() -> None:
    answers = [
        httpx.Response(401, json={"RestException": {"Message": "Authentication failed"}}),
        httpx.Response(500, text="internal error"),
        httpx.Response(200, text="OK"),
    ]
    messages = []
    for answer in answers:
        with pytest.raises(ExotelError) as raised:
            await connect(Recorder(answer).client())
        messages.append(raised.value.message)

    assert json.dumps(messages).count(API_KEY) == 0
    assert json.dumps(messages).count(API_TOKEN) == 0
