"""Running exoplane as a cluster: one key for every process, ``serve --workers N``, and a
small cluster of real processes that loses one worker to ``kill -9`` and another to a
deploy's SIGTERM while hooks arrive."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from asgi_lifespan import LifespanManager
from httpx_sse import aconnect_sse
from pydantic import SecretStr
from sqlalchemy import delete, select

from exoplane.app import create_app
from exoplane.cluster.service import KEY_MISMATCH, check_cluster_key
from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory
from exoplane.models import ClusterKey
from exoplane.security import SecretKeyError, load_secret_key
from tests.conftest import BACKEND, free_port
from tests.factories import app_with_token, database_session
from tests.processes import (
    CALL_PARAMETERS,
    STOP_TIMEOUT_S,
    WEBHOOK_ENV,
    TrackingReceiver,
    app_sending_popups_to,
    call_sids,
    ring,
    serve,
    start,
    succeeded_deliveries,
    tracking_receiver,
)
from tests.test_cli import exoplane
from tests.waiting import WAIT_SECONDS, polled, until

KEY_A = "a" * 24 + "-first-key-of-the-cluster"
KEY_B = "b" * 24 + "-some-other-machines-key"


async def check(database_url: str, key: str) -> None:
    engine = create_engine(database_url)
    try:
        await check_cluster_key(create_session_factory(engine), key.encode())
    finally:
        await engine.dispose()


async def stored_fingerprints(settings: Settings) -> list[str]:
    async with database_session(settings) as session:
        return list(await session.scalars(select(ClusterKey.fingerprint)))


# --- one key per cluster ------------------------------------------------------------------


async def test_the_first_process_records_its_key_and_the_same_key_passes_again(
    database_url: str, settings: Settings
) -> None:
    await check(database_url, KEY_A)
    await check(database_url, KEY_A)

    [fingerprint] = await stored_fingerprints(settings)
    assert len(fingerprint) == 64
    assert KEY_A not in fingerprint


async def test_a_process_with_another_key_is_refused(database_url: str) -> None:
    await check(database_url, KEY_A)

    with pytest.raises(SecretKeyError) as refused:
        await check(database_url, KEY_B)

    assert str(refused.value) == KEY_MISMATCH
    assert KEY_B not in str(refused.value)


async def test_a_database_holding_secrets_but_no_fingerprint_takes_only_the_key_that_wrote_them(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A database from before fingerprints were kept: the first process to start on it must
    not record a key that cannot read what is stored."""
    await app_with_token(client, settings)  # stores the app's Exotel credentials, encrypted
    async with database_session(settings) as session:
        await session.execute(delete(ClusterKey))

    with pytest.raises(SecretKeyError):
        await check(settings.database_url, KEY_B)
    assert await stored_fingerprints(settings) == []

    await check(settings.database_url, load_secret_key(settings).decode())
    assert len(await stored_fingerprints(settings)) == 1


async def test_the_app_does_not_start_with_another_key(tmp_path: Path, settings: Settings) -> None:
    """uvicorn --factory, or any other way of running the app, makes the same check."""
    async with LifespanManager(create_app(settings)):
        pass
    other = settings.model_copy(
        update={"secret_key": SecretStr(KEY_B), "home": tmp_path / "other-home"}
    )

    with pytest.raises(SecretKeyError, match="does not match"):
        async with LifespanManager(create_app(other)):
            pass


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_a_command_started_with_another_key_refuses_with_one_line(
    tmp_path: Path, database_url: str, server_env: dict[str, str], command: str
) -> None:
    await check(database_url, KEY_A)
    env = {**server_env, "EXOPLANE_SECRET_KEY": KEY_B}

    port = ["--port", str(free_port())] if command == "serve" else []
    result = await asyncio.to_thread(partial(exoplane, tmp_path / "home", command, *port, **env))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"exoplane: {KEY_MISMATCH}\n"


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_on_postgresql_a_command_without_a_key_refuses_before_it_reaches_the_database(
    tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXOPLANE_SECRET_KEY", raising=False)
    # Nothing listens on port 1: a command that tried the database would say so instead.
    env = {"EXOPLANE_DATABASE_URL": "postgresql+asyncpg://exoplane@127.0.0.1:1/exoplane"}

    result = exoplane(tmp_path / "home", command, **env)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "exoplane: EXOPLANE_SECRET_KEY must be set when the database is PostgreSQL"
    )
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "home" / "secret.key").exists()


# --- serve --workers N --------------------------------------------------------------------


def api_processes(parent: int) -> set[int]:
    """The API processes ``serve --workers N`` started (not multiprocessing's helpers)."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except FileNotFoundError:
        return set()
    found = set()
    for pid in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except FileNotFoundError:
            continue
    return found


async def healthy(base_url: str) -> bool:
    # A new connection each time, so that no request rides on a dead process's socket.
    async with httpx.AsyncClient(timeout=5.0) as http:
        return (await http.get(base_url + "/healthz")).status_code == 200


async def test_serve_with_workers_runs_that_many_api_processes_and_replaces_one_that_dies(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    async with AsyncExitStack() as stack:
        server, base_url = await serve(
            stack, tmp_path / "home", server_env, "--workers", "2", name="serve"
        )
        parent = server.process.pid
        first = await polled(
            lambda: asyncio.to_thread(api_processes, parent),
            lambda pids: len(pids) == 2,
            what="two API processes",
        )
        assert server.output().startswith(f"exoplane serving on {base_url} (2 processes; ")

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        answers = []

        async def replaced() -> set[int]:
            answers.append(await healthy(base_url))
            return await asyncio.to_thread(api_processes, parent)

        now = await polled(
            replaced,
            lambda pids: len(pids) == 2 and victim not in pids,
            what="a replacement for the killed process",
            every=0.2,
        )
        assert answers
        assert all(answers), "a request failed while one process was down"
        assert first - {victim} < now  # the survivor kept serving, and one new process joined

        server.process.terminate()
        code = await asyncio.to_thread(server.process.wait, STOP_TIMEOUT_S)
        assert code == 0, server.output()
        assert all(not Path(f"/proc/{pid}").exists() for pid in now)


def test_serve_refuses_zero_workers(tmp_path: Path, server_env: dict[str, str]) -> None:
    result = exoplane(tmp_path / "home", "serve", "--workers", "0", **server_env)

    assert result.returncode == 2
    assert "--workers" in result.stderr


# --- a cluster under faults ---------------------------------------------------------------


def receiver_port(receiver: TrackingReceiver) -> int:
    return int(receiver.base_url.rpartition(":")[2])


def connections_of(pid: int, *, to_port: int) -> set[int]:
    """The local ports of process ``pid``'s TCP connections to ``to_port`` on this machine,
    read from /proc (its socket descriptors, matched to the kernel's connection table)."""
    fds = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rpartition(":")[2], 16) == to_port:
                ports.add(int(local.rpartition(":")[2], 16))
    return ports


async def test_a_cluster_delivers_every_event_when_one_worker_is_killed_and_another_stopped(
    tmp_path: Path, database_url: str, server_env: dict[str, str]
) -> None:
    """Two API processes and two workers on PostgreSQL and Redis, hooks alternating between
    the API processes. While they arrive, one worker gets ``kill -9`` and the other SIGTERM,
    and a third starts. Every event arrives; only the killed worker's in-flight deliveries
    may arrive twice (once its leases run out), and none twice at the same time."""
    if BACKEND != "postgres":
        pytest.skip("a cluster runs on PostgreSQL and Redis (EXOPLANE_TEST_BACKEND=postgres)")
    home = tmp_path / "home"
    concurrency = 8
    # A 2 s attempt timeout leases a delivery for 2 * 2 + 5 = 9 s.
    env = {
        **server_env,
        **WEBHOOK_ENV,
        "EXOPLANE_WEBHOOK_TIMEOUT_SECONDS": "2",
        "EXOPLANE_WEBHOOK_CONCURRENCY": str(concurrency),
    }
    calls = call_sids(500)
    async with AsyncExitStack() as stack:
        # 16 deliveries at 0.2 s each: 500 events take several seconds, and the faults
        # land while deliveries are on the wire.
        receiver = await stack.enter_async_context(tracking_receiver(delay=0.2))
        apis = [await serve(stack, home, env, "--no-worker", name=f"api-{n}") for n in (1, 2)]
        killed, stopped = [await start(stack, ["worker"], home, env, f"worker-{n}") for n in (1, 2)]
        app, popup_hook = await app_sending_popups_to(apis[0][1], home, database_url, receiver)

        async def hooks() -> None:
            # Ten batches, alternating between the API processes, a little apart.
            batches = [calls[n : n + 50] for n in range(0, len(calls), 50)]
            for batch, (_, base_url) in zip(batches, itertools.cycle(apis), strict=False):
                await ring(base_url, popup_hook, batch)
                await asyncio.sleep(0.2)

        ringing = asyncio.create_task(hooks())
        await until(lambda: len(receiver.arrivals) >= 100, what="100 arrivals", within=60)
        await until(lambda: bool(receiver.in_flight), what="a delivery in flight", every=0.001)
        # The killed worker's connections to the receiver: requests it had sent may still sit
        # in the receiver's socket buffers, and arrive after it is dead.
        killed_ports = connections_of(killed.process.pid, to_port=receiver_port(receiver))
        killed.kill()

        await until(lambda: len(receiver.arrivals) >= 250, what="250 arrivals", within=60)
        stopped.process.terminate()
        replacement = await start(stack, ["worker"], home, env, "worker-3")
        await ringing

        children = (*(child for child, _ in apis), killed, stopped, replacement)
        outputs = "\n".join(f"--- {c.name}:\n{c.output()[-2000:]}" for c in children)
        assert await asyncio.to_thread(stopped.process.wait, STOP_TIMEOUT_S) == 0, outputs
        await polled(
            lambda: succeeded_deliveries(apis[1][1], app),
            lambda logged: logged == len(calls),
            what="every delivery logged as succeeded",
            within=WAIT_SECONDS * 6,
            every=0.5,
        )

    assert set(receiver.arrived.values()) == set(calls)
    twice = {event for event, count in receiver.arrivals.items() if count > 1}
    sent_by_killed = {e for e, port in receiver.first_from.items() if port in killed_ports}
    assert killed_ports
    assert twice <= sent_by_killed, "an event the killed worker did not send arrived twice"
    assert len(twice) <= concurrency
    assert max(receiver.arrivals.values()) <= 2
    assert receiver.overlapping == [], "an event was received by two requests at once"


# --- following a call live across processes -----------------------------------------------


async def test_a_call_followed_through_one_process_shows_what_another_recorded(
    tmp_path: Path, database_url: str, server_env: dict[str, str]
) -> None:
    """Two processes on one database: Exotel's hooks for a call reach the first while an
    integrator follows the call through the second, which sends every step as it is
    recorded, then ends once the call has ended and its webhooks are settled."""
    home = tmp_path / "home"
    env = {**server_env, **WEBHOOK_ENV}
    async with AsyncExitStack() as stack:
        receiver = await stack.enter_async_context(tracking_receiver(delay=0.0))
        (_, hooked), (_, followed) = [
            await serve(stack, home, env, name=f"api-{n}") for n in (1, 2)
        ]
        app, popup_hook = await app_sending_popups_to(hooked, home, database_url, receiver)
        await ring(hooked, popup_hook, ["c-live"])
        url = f"{followed}/v2/integrations/{app.customer_id}/apps/{app.id}/calls/c-live/events"
        kinds: list[str] = []
        async with (
            httpx.AsyncClient(timeout=WAIT_SECONDS) as http,
            aconnect_sse(http, "GET", url, headers={"Authorization": app.token}) as source,
        ):
            assert source.response.status_code == 200
            events = source.aiter_sse()
            async with asyncio.timeout(WAIT_SECONDS):
                while "webhook_outcome" not in kinds:
                    kinds.append(json.loads((await anext(events)).data)["kind"])
                # The call is still ringing; it ends now, through the other process.
                hung_up = {"CallSid": "c-live", **CALL_PARAMETERS, "DialCallStatus": "completed"}
                hangup = popup_hook.replace("type=popup", "type=incomingcallhungup")
                answer = await http.get(f"{hooked}{hangup}&{urlencode(hung_up)}")
                assert answer.status_code == 200, answer.text
                rest = [event async for event in events]

    assert kinds == ["hook_received", "webhook_queued", "webhook_attempt", "webhook_outcome"]
    assert rest[-1].event == "end"
    # The app sends only popups: the call's end raises no webhook of its own.
    [ended] = [json.loads(event.data) for event in rest[:-1]]
    assert (ended["kind"], ended["detail"]) == ("hook_received", {"type": "incomingcallhungup"})
