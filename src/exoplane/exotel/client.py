"""``ExotelClient``: the one place that talks to Exotel's v1 Calls API.

It owns its HTTP client, sets explicit timeouts, retries Exotel's 429 within a bounded total
time (honouring ``Retry-After``), and turns every failure into an ``ExotelError`` subclass:
callers never see an httpx exception.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from exoplane.exotel.parsing import parse_call_answer
from exoplane.logs import get_logger

DEFAULT_BASE_URL = "https://api.exotel.com"
CUSTOM_FIELD_LIMIT = 128

log = get_logger("exoplane.exotel")


class ExotelError(Exception):
    """Exotel did not place the call; ``message`` says why, in words a user can act on."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ExotelRejected(ExotelError):
    """Exotel answered with a ``RestException``."""


class ExotelHTTPError(ExotelError):
    """Exotel answered with a non-2xx status and no readable reason."""


class ExotelTimeout(ExotelError):
    pass


class ExotelUnreachable(ExotelError):
    pass


class ExotelBadAnswer(ExotelError):
    """A 2xx answer without a call Sid (carriers sometimes answer 200 with an error)."""


class ExotelRateLimited(ExotelError):
    pass


@dataclass(frozen=True, slots=True)
class ExotelCredentials:
    account_sid: str
    api_key: str
    api_token: str
    api_base_url: str = DEFAULT_BASE_URL

    def __repr__(self) -> str:  # never print the key or token
        return f"ExotelCredentials(account_sid={self.account_sid!r}, api_base_url=...)"


@dataclass(frozen=True, slots=True)
class PlacedCall:
    call_sid: str
    provider_status: str


def normalise_base_url(raw: str | None) -> str:
    """``api.in.exotel.com``, ``https://api.exotel.com/`` or one with a path → scheme://host."""
    value = (raw or "").strip()
    if not value:
        return DEFAULT_BASE_URL
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if not parts.hostname:
        raise ValueError(f"{raw!r} has no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"  # credentials in the URL are dropped


class ExotelClient:
    def __init__(
        self,
        http: httpx.AsyncClient | None = None,
        *,
        timeout: float = 15.0,
        rate_limit_budget: float = 10.0,
    ) -> None:
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=5.0), follow_redirects=False
        )
        self._rate_limit_budget = rate_limit_budget

    async def aclose(self) -> None:
        await self._http.aclose()

    async def connect_to_flow(
        self,
        credentials: ExotelCredentials,
        *,
        customer_number: str,
        caller_id: str,
        flow_url: str,
        custom_field: str | None = None,
        status_callback: str | None = None,
    ) -> PlacedCall:
        """Ring ``customer_number`` and bridge them into the flow at ``flow_url``."""
        form = {
            "From": customer_number,
            "CallerId": caller_id,
            "Url": flow_url,
            "CallType": "trans",
        }
        return await self._connect(credentials, form, custom_field, status_callback)

    async def connect_to_stream(
        self,
        credentials: ExotelCredentials,
        *,
        customer_number: str,
        caller_id: str,
        stream_url: str,
        custom_field: str | None = None,
        status_callback: str | None = None,
    ) -> PlacedCall:
        """Ring ``customer_number`` and connect them straight to the bot at ``stream_url``
        (Connect Voice AI: a bidirectional AgentStream, no flow)."""
        form = {
            "From": customer_number,
            "CallerId": caller_id,
            "StreamUrl": stream_url,
            "StreamType": "bidirectional",
        }
        return await self._connect(credentials, form, custom_field, status_callback)

    async def connect_two_numbers(
        self,
        credentials: ExotelCredentials,
        *,
        first: str,
        second: str,
        caller_id: str,
        custom_field: str | None = None,
        status_callback: str | None = None,
    ) -> PlacedCall:
        """Ring ``first`` (an agent's phone or ``sip:`` device), then connect ``second``."""
        form = {"From": first, "To": second, "CallerId": caller_id, "CallType": "trans"}
        return await self._connect(credentials, form, custom_field, status_callback)

    async def _connect(
        self,
        credentials: ExotelCredentials,
        form: dict[str, str],
        custom_field: str | None,
        status_callback: str | None,
    ) -> PlacedCall:
        if custom_field:
            form["CustomField"] = custom_field[:CUSTOM_FIELD_LIMIT]
        if status_callback:
            form["StatusCallback"] = status_callback
            form["StatusCallbackEvents[0]"] = "answered"
            form["StatusCallbackEvents[1]"] = "terminal"
            form["StatusCallbackContentType"] = "application/json"
        base = normalise_base_url(credentials.api_base_url)
        url = f"{base}/v1/Accounts/{credentials.account_sid}/Calls/connect"
        response = await self._post(url, form, credentials)
        return _placed_call(response)

    async def _post(
        self, url: str, form: dict[str, str], credentials: ExotelCredentials
    ) -> httpx.Response:
        deadline = time.monotonic() + self._rate_limit_budget
        auth = httpx.BasicAuth(credentials.api_key, credentials.api_token)
        while True:
            try:
                response = await self._http.post(url, data=form, auth=auth)
            except httpx.TimeoutException as exc:
                raise ExotelTimeout(
                    f"Exotel did not answer in time ({type(exc).__name__})"
                ) from exc
            except httpx.HTTPError as exc:
                raise ExotelUnreachable(f"Exotel could not be reached: {exc}") from exc
            if response.status_code != 429:
                return response
            wait = _retry_after(response)
            if time.monotonic() + wait > deadline:
                raise ExotelRateLimited(
                    "Exotel is rate limiting this account (429) beyond the retry budget; "
                    "try again in a minute",
                    status=429,
                )
            log.warning("exotel rate limited; retrying", wait_seconds=wait)
            await asyncio.sleep(wait)


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _placed_call(response: httpx.Response) -> PlacedCall:
    answer = parse_call_answer(response.text)
    status = response.status_code
    if answer is not None and answer.error:
        raise ExotelRejected(f"Exotel refused the call: {answer.error}", status=status)
    if not 200 <= status < 300:
        raise ExotelHTTPError(
            f"Exotel answered HTTP {status}: {response.text[:200]}", status=status
        )
    if answer is None or not answer.call_sid:
        raise ExotelBadAnswer(
            f"Exotel answered HTTP {status} without a call Sid: {response.text[:200]}",
            status=status,
        )
    return PlacedCall(answer.call_sid, answer.status or "queued")
