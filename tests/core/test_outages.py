"""Outages: the database or Redis cut off or hanging, through a real TCP proxy on 127.0.0.1.

Requests answer 503 with ``Retry-After`` within seconds, the log says so once per interval
rather than once per request, ``/readyz`` answers within its own timeout, and rate limits
fall back to each process's own counters while Redis is sick.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY
from sqlalchemy.engine import make_url

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.errors import is_legacy_path
from exoplane.logs import configure_logging
from tests.conftest import BACKEND, REDIS_URL, make_settings
from tests.factories import customer_with_token, register_app, user_body

postgres_only = pytest.mark.skipif(
    BACKEND != "postgres", reason="needs PostgreSQL and Redis (EXOPLANE_TEST_BACKEND=postgres)"
)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a server, until told to refuse or to hang.

    ``refuse()`` closes every connection and the listening socket (new ones are refused);
    ``hang()`` keeps every connection open but forwards nothing more, and accepts new ones
    without ever connecting them on: a network partition. ``restore()`` forwards again.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if not self._flowing.is_set():
            return  # accepted, never answered
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        sink.close()

    def hang(self) -> None:
        self._flowing.clear()

    async def refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._close_all()

    async def restore(self) -> None:
        self._close_all()
        self._flowing.set()
        if self._server is None:
            await self.start()

    def _close_all(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        await self.refuse()


@contextlib.asynccontextmanager
async def proxy_to(url: str, default_port: int) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy in front of the server of ``url``, and ``url`` pointed at the proxy."""
    parsed = make_url(url)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or default_port)
    await proxy.start()
    try:
        yield proxy, parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    finally:
        await proxy.stop()


@contextlib.asynccontextmanager
async def running(settings: Settings, log: io.StringIO) -> AsyncIterator[httpx.AsyncClient]:
    """The app, its log lines written to ``log``."""
    app = create_app(settings)
    configure_logging(settings, stream=log)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def captured_log(settings: Settings) -> Iterator[io.StringIO]:
    """Where the app of the test logs to."""
    yield io.StringIO()
    configure_logging(settings)


def log_lines(captured: io.StringIO, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("event", "").startswith(event)]


async def timed(call: Any) -> tuple[httpx.Response, float]:
    """The response and how long it took; a call that hangs fails the test after 10 s."""
    started = time.monotonic()
    async with asyncio.timeout(10):
        response = await call
    return response, time.monotonic() - started


def assert_outage_answer(response: httpx.Response) -> None:
    """A 503 with Retry-After, in the envelope of the route's family."""
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    if is_legacy_path(response.request.url.path):
        assert body["Code"] == 503
        assert body["Status"] == "Failed"
        message = body["Error"]
    else:
        assert body["error"]["code"] == "service_unavailable"
        message = body["error"]["message"]
    assert "database" in message.lower()
    assert "internal server error" not in response.text.lower()


# --- PostgreSQL ------------------------------------------------------------------------------


@postgres_only
async def test_api_calls_answer_503_while_the_database_refuses_and_recover_after(
    tmp_path: Path, database_url: str, captured_log: io.StringIO
) -> None:
    async with proxy_to(database_url, 5432) as (proxy, proxied_url):
        settings = make_settings(tmp_path / "home", proxied_url)
        async with running(settings, captured_log) as client:
            customer = await customer_with_token(client, settings)
            app = await register_app(client, customer)
            headers = {"Authorization": app.token}
            assert (await client.get("/v2/integrations/app", headers=headers)).status_code == 200

            await proxy.refuse()
            for _ in range(20):
                response, took = await timed(client.get("/v2/integrations/app", headers=headers))
                assert_outage_answer(response)
                assert took < 3
            # A resource-style route answers in its own envelope.
            response = await client.post(app.users_path, headers=headers, json=user_body())
            assert not is_legacy_path(app.users_path)
            assert_outage_answer(response)

            await proxy.restore()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                response = await client.get("/v2/integrations/app", headers=headers)
                if response.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert response.status_code == 200, response.text

    outages = log_lines(captured_log, "database outage")
    # One line for the outage (per kind), not one per request; no traceback at all.
    assert 1 <= len(outages) <= 2, outages
    assert "unhandled error" not in captured_log.getvalue()
    assert "Traceback" not in captured_log.getvalue()


@postgres_only
async def test_a_partitioned_database_fails_requests_in_seconds_and_readyz_in_its_timeout(
    tmp_path: Path, database_url: str, captured_log: io.StringIO
) -> None:
    async with proxy_to(database_url, 5432) as (proxy, proxied_url):
        settings = make_settings(
            tmp_path / "home",
            proxied_url,
            database_connect_timeout_seconds=1,
            database_statement_timeout_seconds=1,
            readiness_timeout_seconds=0.5,
        )
        async with running(settings, captured_log) as client:
            customer = await customer_with_token(client, settings)
            app = await register_app(client, customer)
            headers = {"Authorization": app.token}
            assert (await client.get("/readyz")).status_code == 200

            proxy.hang()
            calls = [client.get("/v2/integrations/app", headers=headers) for _ in range(5)]
            results = await asyncio.gather(*(timed(call) for call in calls))
            for response, took in results:
                assert_outage_answer(response)
                assert took < 5, took

            response, took = await timed(client.get("/readyz"))
            assert response.status_code == 503
            assert response.json()["checks"]["database"].startswith("unavailable")
            assert took < 1.5, took

            await proxy.restore()

    assert "Traceback" not in captured_log.getvalue()


# --- Redis -----------------------------------------------------------------------------------


def fallback_gauge() -> float:
    return REGISTRY.get_sample_value("exoplane_ratelimit_fallback") or 0.0


@postgres_only
async def test_a_hanging_redis_costs_calls_little_and_limits_fall_back_to_local_counters(
    tmp_path: Path, database_url: str, captured_log: io.StringIO
) -> None:
    async with proxy_to(REDIS_URL, 6379) as (proxy, proxied_redis):
        settings = make_settings(
            tmp_path / "home",
            database_url,
            redis_url=proxied_redis,
            rate_limit="6/minute",
            redis_timeout_seconds=0.5,
            redis_recheck_seconds=0.5,
        )
        async with running(settings, captured_log) as client:
            customer = await customer_with_token(client, settings)
            app = await register_app(client, customer)
            headers = {"Authorization": app.token}
            proxy.hang()
            statuses = []
            for _ in range(8):
                response, took = await timed(client.get("/v2/integrations/app", headers=headers))
                assert took < 1.5, took
                statuses.append(response.status_code)
            # The budget (6 a minute, one of which was spent through Redis) is kept locally.
            assert statuses.count(200) == 6, statuses
            assert statuses[-1] == 429
            assert fallback_gauge() == 1

            response, took = await timed(client.get("/readyz"))
            assert took < 1.5
            assert response.status_code == 503
            assert response.json()["checks"]["redis"].startswith("unavailable")
            assert response.json()["rate_limits"] == "local"

            await proxy.restore()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await client.get("/v2/integrations/app", headers=headers)
                if (await client.get("/readyz")).json()["rate_limits"] == "redis":
                    break
                await asyncio.sleep(0.1)
            assert (await client.get("/readyz")).json()["rate_limits"] == "redis"
            assert fallback_gauge() == 0

    assert len(log_lines(captured_log, "Redis unavailable")) == 1
    assert len(log_lines(captured_log, "Redis answers again")) == 1
    assert not log_lines(captured_log, "rate limiter unavailable")


@postgres_only
async def test_a_refused_redis_falls_back_at_once_and_readyz_says_so(
    tmp_path: Path, database_url: str, captured_log: io.StringIO
) -> None:
    async with proxy_to(REDIS_URL, 6379) as (proxy, proxied_redis):
        settings = make_settings(
            tmp_path / "home", database_url, redis_url=proxied_redis, rate_limit="3/minute"
        )
        async with running(settings, captured_log) as client:
            customer = await customer_with_token(client, settings)
            headers = {"Authorization": customer.token}
            await proxy.refuse()
            statuses = []
            for _ in range(5):
                response, took = await timed(
                    client.get("/v2/integrations/app?entity=customer", headers=headers)
                )
                assert took < 1.5, took
                statuses.append(response.status_code)
            assert statuses.count(429) >= 1, statuses
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["checks"]["redis"].startswith("unavailable")
            assert response.json()["checks"]["database"] == "ok"

    assert len(log_lines(captured_log, "Redis unavailable")) == 1


# --- SQLite ----------------------------------------------------------------------------------


def sqlite_path(database_url: str) -> str:
    return make_url(database_url).database or ""


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's own locking")
async def test_a_locked_sqlite_database_answers_503_and_readyz_stays_bounded(
    tmp_path: Path, database_url: str, captured_log: io.StringIO
) -> None:
    settings = make_settings(
        tmp_path / "home",
        database_url,
        database_statement_timeout_seconds=1,
        readiness_timeout_seconds=0.5,
    )
    async with running(settings, captured_log) as client:
        customer = await customer_with_token(client, settings)
        app = await register_app(client, customer)
        headers = {"Authorization": app.token}

        holder = sqlite3.connect(sqlite_path(database_url), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            writes = [
                asyncio.create_task(
                    timed(client.post(app.users_path, headers=headers, json=user_body(n)))
                )
                for n in range(3)
            ]
            await asyncio.sleep(0)
            # The single pooled connection waits for the lock: /readyz must not wait with it.
            response, took = await timed(client.get("/readyz"))
            assert took < 1.5, took
            assert response.status_code == 503
            for response, took in await asyncio.gather(*writes):
                assert_outage_answer(response)
                assert took < 6, took
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        response = await client.post(app.users_path, headers=headers, json=user_body(9))
        assert response.status_code in (200, 201), response.text
        assert (await client.get("/readyz")).status_code == 200

    assert len(log_lines(captured_log, "database outage")) == 1
    assert "Traceback" not in captured_log.getvalue()
