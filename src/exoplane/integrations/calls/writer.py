"""Group commit for Passthru hooks: the reports that arrive together are written together.

Exotel reports every call several times, and a busy account's reports arrive concurrently.
A transaction per report would cost each report a transaction and a statement per row.
Instead, the reports waiting when a write starts share one transaction and a few
statements, and the next write takes all that arrived meanwhile. Each hook is answered only
after the transaction holding its report commits, so an answered report is never lost.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.db import OUTBOX_WRITTEN, unit_of_work
from exoplane.errors import database_outage
from exoplane.integrations.calls.service import HookReport, record_hooks
from exoplane.logs import get_logger
from exoplane.security import Vault
from exoplane.webhooks.service import LocalDelivery

log = get_logger("exoplane.calls")

# Reports written in one transaction at most; the rest wait for the next.
MAX_BATCH = 256


@dataclass(slots=True)
class _Waiting:
    report: HookReport
    written: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, error: Exception | None) -> None:
        if self.written.done():  # its request was cancelled (the client went away)
            return
        if error is None:
            self.written.set_result(None)
        else:
            self.written.set_exception(error)


class HookWriter:
    """Writes hook reports a batch per transaction; the webhooks they raise go straight to
    this process's delivery worker while it has room, and are queued for claiming beyond."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: Vault,
        delivery: LocalDelivery,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._delivery = delivery
        self._waiting: list[_Waiting] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write what is waiting, then stop; a write under way is finished, not cut off."""
        self._stopping = True
        self._arrived.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def write(self, report: HookReport) -> None:
        """Returns once the report is committed; raises what writing it raised."""
        if self._task is None or self._stopping:
            raise RuntimeError("the hook writer is not running")
        waiting = _Waiting(report)
        self._waiting.append(waiting)
        self._arrived.set()
        await waiting.written

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._waiting:
                await self._write_next()
            if self._stopping:
                return

    async def _write_next(self) -> None:
        batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        try:
            await self._commit(batch)
        except Exception as error:
            if len(batch) == 1 or database_outage(error) is not None:
                # In an outage each report on its own would fail the same way, one timeout
                # after another.
                for waiting in batch:
                    waiting.settle(error)
                return
            # One bad report must not fail the others: each is tried on its own.
            log.warning("a batch of hook reports failed; writing them one by one", size=len(batch))
            for waiting in batch:
                try:
                    await self._commit([waiting])
                except Exception as own_error:
                    waiting.settle(own_error)
                else:
                    waiting.settle(None)
            return
        for waiting in batch:
            waiting.settle(None)

    async def _commit(self, batch: list[_Waiting]) -> None:
        handoff = self._delivery.handoff()
        reports = [waiting.report for waiting in batch]
        try:
            async with unit_of_work(self._sessions) as session:
                await record_hooks(session, self._vault, reports, handoff)
        except BaseException:
            if handoff is not None:
                handoff.cancel()
            raise
        if handoff is not None:
            handoff.send()
        if session.info.get(OUTBOX_WRITTEN):
            self._delivery.wake()
