"""Delivery survives crashes, and several workers never send one event twice at once.

Real processes end to end: ``exoplane serve`` (and ``exoplane worker``) as children of the
test, Exotel's popup hook called over HTTP, and a receiver on 127.0.0.1 that keeps track of
every webhook it gets and of which ones are being received at this moment.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.conftest import BACKEND
from tests.processes import (
    STOP_TIMEOUT_S,
    WEBHOOK_ENV,
    app_sending_popups_to,
    call_sids,
    delivered_and_logged,
    ring,
    serve,
    start,
    succeeded_deliveries,
    tracking_receiver,
    wait_until,
)
from tests.waiting import polled

# --- the tests ----------------------------------------------------------------------------


async def test_every_event_is_delivered_after_the_server_is_killed_mid_delivery(
    tmp_path: Path, database_url: str, server_env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    # Two deliveries at a time, 50 ms each: 100 events take seconds, so the kill lands
    # while most are still to go and some are on the wire.
    env = {**server_env, **WEBHOOK_ENV, "EXOPLANE_WEBHOOK_CONCURRENCY": "2"}
    calls = call_sids(100)
    async with AsyncExitStack() as stack:
        receiver = await stack.enter_async_context(tracking_receiver(delay=0.05))
        first, base_url = await serve(stack, home, env, name="serve-1")
        _, popup_hook = await app_sending_popups_to(base_url, home, database_url, receiver)
        await ring(base_url, popup_hook, calls)

        assert await wait_until(lambda: len(receiver.delivered) >= 10, 20), first.output()
        assert await wait_until(lambda: bool(receiver.in_flight), 5), "nothing in flight"
        # No await between these: the receiver (on this loop) cannot answer in between.
        cut_off = receiver.sender_killed()
        first.kill()
        assert cut_off, "no delivery was in flight when the server was killed"
        assert len(receiver.delivered) < len(calls), "all delivered before the kill"

        second, _ = await serve(stack, home, env, name="serve-2")
        all_delivered = await wait_until(lambda: receiver.delivered_calls() == set(calls), 40)

        assert all_delivered, (
            f"{len(set(calls) - receiver.delivered_calls())} of {len(calls)} events never "
            f"delivered after the restart\n--- restarted server:\n{second.output()[-3000:]}"
        )
        assert cut_off <= set(receiver.delivered)
        assert len(receiver.delivered) == len(calls)  # one event id per call, stable


async def test_a_worker_stopped_mid_delivery_records_what_it_sent_and_hands_back_the_rest(
    tmp_path: Path, database_url: str, server_env: dict[str, str]
) -> None:
    """SIGTERM, as a deploy sends it, to a worker with 64 deliveries on the wire: it waits
    for their answers, records all 64, and the next worker sends only what was left, at
    once, long before any lease could run out. The answers come back spread over 1.5 s,
    as a real receiver's would."""
    home = tmp_path / "home"
    # A 10 s timeout makes a lease last 25 s: a handed-back delivery goes out at once, one
    # left leased would go out only after that.
    env = {**server_env, **WEBHOOK_ENV, "EXOPLANE_WEBHOOK_TIMEOUT_SECONDS": "10"}
    calls = call_sids(100)
    async with AsyncExitStack() as stack:
        receiver = await stack.enter_async_context(tracking_receiver(delay=1.0, spread=1.5))
        _, base_url = await serve(stack, home, env, "--no-worker", name="serve")
        first = await start(stack, ["worker"], home, env, "worker-1")
        app, popup_hook = await app_sending_popups_to(base_url, home, database_url, receiver)
        await ring(base_url, popup_hook, calls)
        assert await wait_until(lambda: len(receiver.in_flight) == 64, 30), first.output()

        first.process.terminate()
        stopped_at = time.monotonic()
        second = await start(stack, ["worker"], home, env, "worker-2")
        # Done when the log says every delivery succeeded: a recorded answer is never sent
        # again, and one left unrecorded would be, once its lease ran out.
        await polled(
            lambda: succeeded_deliveries(base_url, app),
            lambda logged: logged == len(calls),
            what="every delivery logged as succeeded",
            within=60,
            every=0.2,
        )
        took = time.monotonic() - stopped_at

        outputs = "\n".join(f"--- {w.name}:\n{w.output()[-3000:]}" for w in (first, second))
        assert await asyncio.to_thread(first.process.wait, STOP_TIMEOUT_S) == 0, outputs
        assert took < 15, f"the rest took {took:.1f} s: a lease ran out first\n{outputs}"
        assert receiver.delivered_calls() == set(calls)
        assert [event for event, count in receiver.arrivals.items() if count > 1] == []


async def test_two_workers_never_deliver_one_event_at_the_same_time(
    tmp_path: Path, database_url: str, server_env: dict[str, str]
) -> None:
    if BACKEND != "postgres":
        pytest.skip("several workers need PostgreSQL (FOR UPDATE SKIP LOCKED); SQLite has one")
    home = tmp_path / "home"
    env = {**server_env, **WEBHOOK_ENV, "EXOPLANE_WEBHOOK_CONCURRENCY": "32"}
    calls = call_sids(1000)
    async with AsyncExitStack() as stack:
        receiver = await stack.enter_async_context(tracking_receiver(delay=0.005))
        _, base_url = await serve(stack, home, env, "--no-worker", name="serve")
        workers = [await start(stack, ["worker"], home, env, f"worker-{n}") for n in (1, 2)]
        app, popup_hook = await app_sending_popups_to(base_url, home, database_url, receiver)
        await ring(base_url, popup_hook, calls)

        outputs = "\n".join(f"--- {w.name}:\n{w.output()[-2000:]}" for w in workers)
        logged = await delivered_and_logged(receiver, calls, base_url, app, outputs)

        assert receiver.overlapping == [], "events received by two requests at once"
        assert logged == len(calls)
        assert all(w.process.poll() is None for w in workers), outputs
        # Both took part, or the test proved nothing about two of them.
        assert all('"webhook attempt"' in w.output() for w in workers), outputs


async def test_a_server_handing_over_and_a_standalone_worker_never_send_one_event_at_once(
    tmp_path: Path, database_url: str, server_env: dict[str, str]
) -> None:
    if BACKEND != "postgres":
        pytest.skip("a second worker needs PostgreSQL (FOR UPDATE SKIP LOCKED); SQLite has one")
    home = tmp_path / "home"
    env = {**server_env, **WEBHOOK_ENV}
    calls = call_sids(600)
    async with AsyncExitStack() as stack:
        receiver = await stack.enter_async_context(tracking_receiver(delay=0.005))
        # Four slots in the server's own worker: most hooks' deliveries cannot be handed over
        # and wait in the queue, where the standalone worker claims them.
        server_worker_env = {**env, "EXOPLANE_WEBHOOK_CONCURRENCY": "4"}
        server, base_url = await serve(stack, home, server_worker_env, name="serve")
        worker = await start(
            stack, ["worker"], home, {**env, "EXOPLANE_WEBHOOK_CONCURRENCY": "32"}, "worker"
        )
        app, popup_hook = await app_sending_popups_to(base_url, home, database_url, receiver)
        await ring(base_url, popup_hook, calls)

        outputs = "\n".join(f"--- {c.name}:\n{c.output()[-2000:]}" for c in (server, worker))
        logged = await delivered_and_logged(receiver, calls, base_url, app, outputs)

        assert receiver.overlapping == [], "events received by two requests at once"
        assert logged == len(calls)
        # Both took part: the server's worker with deliveries handed over, the other by claims.
        assert '"webhook attempt"' in server.output(), outputs
        assert '"webhook attempt"' in worker.output(), outputs
