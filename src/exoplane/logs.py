"""Structured logging: one JSON object per line, with the request id bound per request."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from exoplane.config import Settings

# The level configure_logging() last set, so callers can skip building lines nobody writes.
_min_level = logging.INFO

SENSITIVE_KEY = re.compile(r"secret|token|password|api_key|authorization|cookie", re.IGNORECASE)
REDACTED = "[redacted]"


def redact_sensitive_fields(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Last line of defence: no field whose name suggests a credential reaches the output."""
    for key in event:
        if SENSITIVE_KEY.search(key):
            event[key] = REDACTED
    return event


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    output = stream if stream is not None else sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    global _min_level
    level = _min_level = getattr(logging, settings.log_level.upper())
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            redact_sensitive_fields,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )
    # Libraries (uvicorn among them) log through the standard library; their lines are
    # rendered like the project's own, one JSON object each, tracebacks included.
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_sensitive_fields,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    # Keep them quiet but visible on trouble.
    logging.basicConfig(handlers=[handler], level=logging.WARNING, force=True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own logging set-up, when it ran, gave these plain-text handlers.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True


def enabled_for(level: int) -> bool:
    """Whether a line at ``level`` gets written. Logging a line that is filtered out still
    costs a few microseconds, which counts on a path taken for every request."""
    return level >= _min_level


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
