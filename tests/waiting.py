"""Waiting on conditions, never on the clock.

A test that sleeps for "long enough" is sized for an idle machine and fails on a loaded one.
These helpers poll until a condition holds, and give up (failing the test with what was last
seen) only after a deadline generous enough for a busy two-CPU machine.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# The longest any one awaited condition may take before the test fails.
WAIT_SECONDS = 15.0
POLL_SECONDS = 0.02


async def polled(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    within: float = WAIT_SECONDS,
    every: float = POLL_SECONDS,
) -> T:
    """``fetch()`` again and again until ``done`` holds of what it returned; that value.

    Fails, naming ``what`` and the last value seen, once ``within`` seconds have passed.
    """
    deadline = time.monotonic() + within
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s; last seen: {value!r}")
        await asyncio.sleep(every)


async def until(
    condition: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    what: str,
    within: float = WAIT_SECONDS,
    every: float = POLL_SECONDS,
) -> None:
    """Wait until ``condition()`` (plain or async) is true; fails naming ``what`` after
    ``within`` seconds."""

    async def check() -> bool:
        held = condition()
        return bool(await held) if inspect.isawaitable(held) else bool(held)

    await polled(check, bool, what=what, within=within, every=every)
