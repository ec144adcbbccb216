"""While serving, the collector runs at the server's thresholds and skips what lives as
long as the process."""

from __future__ import annotations

import gc

from asgi_lifespan import LifespanManager

from exoplane.app import GC_THRESHOLDS, create_app
from exoplane.config import Settings


async def test_serving_collects_young_objects_less_often_and_freezes_the_startup_heap(
    settings: Settings,
) -> None:
    defaults = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    try:
        async with LifespanManager(create_app(settings)):
            thresholds = gc.get_threshold()
            frozen = gc.get_freeze_count()
    finally:
        gc.set_threshold(*defaults)

    assert thresholds == GC_THRESHOLDS
    assert thresholds[0] > 700
    assert frozen > 10_000  # modules, routes and models, not left to the collector
