"""Bots, found through the ``exoplane.bots`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from exoplane.logs import get_logger
from exoplane.media.bots.base import Bot, CallControl, CallInfo

ENTRY_POINT_GROUP = "exoplane.bots"

log = get_logger("exoplane.media")

__all__ = ["Bot", "CallControl", "CallInfo", "discover_bots"]


def discover_bots() -> dict[str, type[Bot]]:
    """Every installed bot by id. A bot that fails to load is logged and left out."""
    bots: dict[str, type[Bot]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception:
            log.exception("bot failed to load", bot_id=entry.name, target=entry.value)
            continue
        if isinstance(loaded, type) and issubclass(loaded, Bot):
            bots[entry.name] = loaded
        else:
            log.warning("entry point is not a Bot subclass", bot_id=entry.name)
    return bots
