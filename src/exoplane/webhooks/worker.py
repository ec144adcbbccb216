"""The delivery worker: leases due deliveries, signs and POSTs them, logs every attempt.

Several workers (processes, or tasks beside the API) share one queue: each claims rows under
a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so no delivery is attempted by two of
them at once, and a lease left by a crashed worker runs out and the delivery is tried again.
Delivery is therefore at least once; receivers de-duplicate on ``webhook-id``.

Deliveries written by a process running a worker skip the queue while that worker has
free slots: they are written already leased to it and started when their transaction
commits (``handoff``). Only the rest, retries and other processes' deliveries are claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import aiohttp
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane import __version__
from exoplane.config import Settings
from exoplane.db import unit_of_work
from exoplane.logs import enabled_for, get_logger
from exoplane.models.base import utcnow
from exoplane.retention.service import prune_until
from exoplane.security import Vault
from exoplane.stats.rollup import rollup_until
from exoplane.webhooks import repository
from exoplane.webhooks.operators import replay_until
from exoplane.webhooks.repository import Claimed
from exoplane.webhooks.service import (
    RESPONSE_BODY_LIMIT,
    AttemptResult,
    WebhookTargets,
    apply_result,
)
from exoplane.webhooks.signing import signature_headers
from exoplane.webhooks.targets import ForbiddenTarget, check_literal_host, resolver_for

log = get_logger("exoplane.webhooks")
# Long enough for a burst of completions to share one claim, short enough not to idle the
# slots: with 64 slots, 20 ms held SQLite's delivery to ~1,200/s, 5 ms let it reach ~1,450/s.
CLAIM_GATHER_SECONDS = 0.005
# Decrypted signing secrets kept in memory (keyed by their ciphertext) before starting over.
DECRYPTED_SECRETS_KEPT = 1024


class WebhookWorker:
    """Claims, sends and records deliveries, ``webhook_concurrency`` at a time."""

    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], vault: Vault
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._vault = vault
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        # Each attempt under way, with the token of the lease it holds.
        self._in_flight: dict[asyncio.Task[None], str] = {}
        # Finished attempts waiting to be written, in batches, by the recorder.
        self._results: list[tuple[int, str, AttemptResult]] = []
        self._results_ready = asyncio.Event()
        # Set once stopping and every attempt has finished or been cut off: the recorder
        # then writes what is left and ends.
        self._drained = False
        # Leases to hand back on shutdown: of batches that could not be recorded, and of
        # deliveries handed over after this worker stopped sending.
        self._unrecorded: set[str] = set()
        # Slots promised to deliveries being written (see ``handoff``), not yet started.
        self._held = 0
        # Whether due deliveries may be waiting to be claimed: set by ``wake`` and by a
        # claim that filled every free slot; a finished attempt then looks for more.
        self._more = True
        self._http: aiohttp.ClientSession | None = None
        self._decrypted: dict[str, str] = {}

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._more = True
        self._wake.set()

    def handoff(self) -> LocalHandoff | None:
        """Free slots for deliveries about to be written, or None when not delivering."""
        if self._http is None or self._stopping.is_set():
            return None
        lease_until = utcnow() + timedelta(seconds=self._settings.webhook_lease_seconds)
        return LocalHandoff(self, str(uuid.uuid4()), lease_until)

    def _free_slots(self) -> int:
        return self._settings.webhook_concurrency - len(self._in_flight) - self._held

    def _hold(self, wanted: int) -> int:
        held = max(0, min(wanted, self._free_slots()))
        self._held += held
        return held

    def _unhold(self, held: int) -> None:
        self._held -= held

    def _start_handed(
        self, lease_token: str, deliveries: Sequence[tuple[Claimed, WebhookTargets]]
    ) -> None:
        """Start deliveries written leased to this worker; if it stopped meanwhile, their
        leases run out and they are claimed again later."""
        if self._http is None:
            self._unrecorded.add(lease_token)
            return
        now = utcnow()
        for delivery, targets in deliveries:
            secrets = self._secrets(
                targets.webhook_secret_enc,
                targets.previous_webhook_secret_enc,
                targets.previous_webhook_secret_expires_at,
                now,
            )
            self._start(self._http, delivery, lease_token, secrets)

    def _start(
        self, http: aiohttp.ClientSession, delivery: Claimed, lease_token: str, secrets: list[str]
    ) -> None:
        task = asyncio.create_task(self._deliver(http, delivery, lease_token, secrets))
        self._in_flight[task] = lease_token
        task.add_done_callback(self._in_flight.pop)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Deliver until ``stop()``; then drain: claim nothing more, let the attempts under
        way finish (each is bounded by the webhook timeout), record every finished one, and
        hand back every lease still held, so no other worker waits for one to run out."""
        settings = self._settings
        connector = aiohttp.TCPConnector(
            limit=settings.webhook_concurrency,
            resolver=resolver_for(settings.allow_private_networks),
        )
        timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds)
        headers = {"User-Agent": f"exoplane-webhooks/{__version__}"}
        recorder = asyncio.create_task(self._record_results())
        pruner = asyncio.create_task(
            prune_until(self._stopping, self._sessions, settings.retention_days)
        )
        replayer = asyncio.create_task(replay_until(self._stopping, self._sessions, self.wake))
        roller = asyncio.create_task(
            rollup_until(self._stopping, self._sessions, settings.retention_days)
        )
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers
        ) as http:
            self._http = http
            while not self._stopping.is_set():
                # Completions and new events wake the loop often; let them gather briefly
                # so one claim serves many of them.
                await asyncio.sleep(CLAIM_GATHER_SECONDS)
                free = self._free_slots()
                claimed = []
                if free > 0:
                    self._more = False
                    claimed = await self._claim(free)
                    if len(claimed) >= free:
                        self._more = True
                for delivery, lease_token, secrets in claimed:
                    self._start(http, delivery, lease_token, secrets)
                if not claimed or free <= len(claimed):
                    await self._pause()
            self._http = None
            if self._in_flight:
                await asyncio.wait(self._in_flight, timeout=settings.webhook_timeout_seconds + 1)
            cut_off = dict(self._in_flight)
            for task in cut_off:  # only if a send outlived its own timeout
                task.cancel()
            if cut_off:
                await asyncio.wait(cut_off)
        # Not cancelled: a write cut off inside its transaction could keep the connection.
        self._drained = True
        self._results_ready.set()
        await recorder
        await pruner
        await replayer
        await roller
        await self._release_leases(set(cut_off.values()) | self._unrecorded)

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._settings.webhook_poll_seconds)
        self._wake.clear()

    async def _claim(self, limit: int) -> list[tuple[Claimed, str, list[str]]]:
        now = utcnow()
        # A fresh token per claim: a result is recorded only while its own lease holds.
        lease_token = str(uuid.uuid4())
        lease_until = now + timedelta(seconds=self._settings.webhook_lease_seconds)
        try:
            async with unit_of_work(self._sessions) as session:
                deliveries = await repository.claim_due(
                    session, now, lease_until, lease_token, limit
                )
                if not deliveries:
                    return []
                secrets = await self._signing_secrets(session, {d.app_id for d in deliveries})
        except Exception:
            log.exception("claiming webhook deliveries failed")
            return []
        return [
            (delivery, lease_token, secrets.get(delivery.app_id, [])) for delivery in deliveries
        ]

    async def _signing_secrets(
        self, session: AsyncSession, app_ids: set[str]
    ) -> dict[str, list[str]]:
        now = utcnow()
        return {
            app_id: self._secrets(current, previous, expires, now)
            for app_id, current, previous, expires in await repository.signing_secrets(
                session, app_ids
            )
        }

    def _secrets(
        self, current: str, previous: str | None, expires: datetime | None, now: datetime
    ) -> list[str]:
        """The secrets to sign with: the current one, and the previous one until it expires."""
        secrets = [self._decrypt(current)]
        if previous is not None and expires is not None and expires > now:
            secrets.append(self._decrypt(previous))
        return secrets

    def _decrypt(self, encrypted: str) -> str:
        # Every delivery of an app is signed with the same few secrets: decrypted once each.
        secret = self._decrypted.get(encrypted)
        if secret is None:
            if len(self._decrypted) >= DECRYPTED_SECRETS_KEPT:
                self._decrypted.clear()
            secret = self._decrypted[encrypted] = self._vault.decrypt(encrypted)
        return secret

    async def _deliver(
        self,
        http: aiohttp.ClientSession,
        delivery: Claimed,
        lease_token: str,
        secrets: Sequence[str],
    ) -> None:
        result = await self._post(http, delivery, secrets)
        if enabled_for(logging.INFO):
            log.info(
                "webhook attempt",
                delivery_id=delivery.id,
                event_id=delivery.event_id,
                event_type=delivery.event_type,
                status=result.status_code,
                latency_ms=result.latency_ms,
                error=result.error,
            )
        self._results.append((delivery.id, lease_token, result))
        self._results_ready.set()
        if self._more:
            self._wake.set()  # a slot is free and work may be waiting: look now

    async def _record_results(self) -> None:
        """Write finished attempts a batch per transaction, not one transaction each.

        A batch that cannot be written is logged; its leases are handed back on shutdown
        or run out, and the deliveries are attempted again, so nothing is lost (delivery
        stays at least once). While the worker drains, attempts still finish and are
        written as before; once it has drained, what is left is written and the loop ends.
        """
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            if self._drained:  # the last write: what is left, then done
                await self._write_results()
                return
            await asyncio.sleep(0.01)  # let a burst of completions share one transaction
            await self._write_results()

    async def _write_results(self) -> None:
        batch, self._results = self._results, []
        if not batch:
            return
        try:
            async with unit_of_work(self._sessions) as session:
                leases = {
                    lease.id: lease
                    for lease in await repository.leases(session, [item[0] for item in batch])
                }
                now = utcnow()
                deliveries, attempts = [], []
                for delivery_id, lease_token, result in batch:
                    lease = leases.get(delivery_id)
                    if lease is None or lease.lease_token != lease_token:
                        continue  # our lease ran out and another worker took it over
                    delivery, attempt = apply_result(
                        lease, result, self._settings.webhook_retry_schedule, now
                    )
                    deliveries.append(delivery)
                    attempts.append(attempt)
                await repository.record_attempts(session, deliveries, attempts)
        except Exception:
            log.exception("recording webhook attempts failed", attempts=len(batch))
            self._unrecorded.update(lease_token for _, lease_token, _ in batch)

    async def _post(
        self, http: aiohttp.ClientSession, delivery: Claimed, secrets: Sequence[str]
    ) -> AttemptResult:
        started = time.perf_counter()

        def elapsed() -> int:
            return round((time.perf_counter() - started) * 1000)

        headers = {
            "Content-Type": "application/json",
            **signature_headers(secrets, delivery.event_id, utcnow(), delivery.payload),
        }
        common = {str(name): value for name, value in http.headers.items()}
        sent = orjson.dumps(common | headers).decode()
        url = delivery.url
        try:
            check_literal_host(url, allow_private=self._settings.allow_private_networks)
            async with http.post(
                url, data=delivery.payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                body = await response.content.read(RESPONSE_BODY_LIMIT)
                text = body.decode("utf-8", errors="replace")
                return AttemptResult(response.status, elapsed(), None, text, sent)
        except ForbiddenTarget as exc:
            return AttemptResult(None, elapsed(), f"forbidden target: {exc}", None)
        except TimeoutError:
            limit = self._settings.webhook_timeout_seconds
            return AttemptResult(None, elapsed(), f"timed out after {limit:g} s", None, sent)
        except aiohttp.ClientError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, ForbiddenTarget) else None
            if cause is not None:
                return AttemptResult(None, elapsed(), f"forbidden target: {cause}", None)
            error = f"{type(exc).__name__}: {exc}"[:500]
            return AttemptResult(None, elapsed(), error, None, sent)

    async def _release_leases(self, tokens: set[str]) -> None:
        """On shutdown, hand back the leases whose attempts were not recorded, so other
        workers need not wait for them to run out. A recorded attempt's lease was already
        given up when it was written."""
        if not tokens:
            return
        try:
            async with unit_of_work(self._sessions) as session:
                for token in sorted(tokens):
                    await repository.release_leases(session, token)
        except Exception:
            log.exception(
                "handing back webhook leases failed; they will run out", leases=len(tokens)
            )


class LocalHandoff:
    """Slots of one worker held for the deliveries of one transaction (``Handoff``).

    ``send()`` after the commit starts them; ``cancel()`` after a rollback frees the slots.
    """

    def __init__(self, worker: WebhookWorker, lease_token: str, leased_until: datetime) -> None:
        self._worker = worker
        self.lease_token = lease_token
        self.leased_until = leased_until
        self._held = 0
        self._deliveries: list[tuple[Claimed, WebhookTargets]] = []

    def take(self, wanted: int) -> int:
        granted = self._worker._hold(wanted)
        self._held += granted
        return granted

    def add(self, delivery: Claimed, targets: WebhookTargets) -> None:
        self._deliveries.append((delivery, targets))

    def send(self) -> None:
        deliveries = self._deliveries
        self.cancel()
        if deliveries:
            self._worker._start_handed(self.lease_token, deliveries)

    def cancel(self) -> None:
        self._worker._unhold(self._held)
        self._held = 0
        self._deliveries = []
