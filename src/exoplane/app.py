"""``create_app()``: the ASGI application and the lifespan that owns its resources."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig
from redis.asyncio import BlockingConnectionPool
from starlette.middleware.cors import CORSMiddleware

from exoplane import __version__
from exoplane.admin.app_endpoints import router as admin_apps_router
from exoplane.admin.endpoints import router as admin_router
from exoplane.capabilities import Capabilities
from exoplane.cluster.service import check_cluster_key
from exoplane.config import Settings
from exoplane.console.errors import install_console_error_pages
from exoplane.console.portal_routes import router as console_portal_router
from exoplane.console.routes import router as console_router
from exoplane.console.templates import CONSOLE_STATIC, compile_templates, console_static
from exoplane.console.tenant_routes import router as console_tenants_router
from exoplane.console.traffic_routes import router as console_traffic_router
from exoplane.db import Reader, create_engine, create_session_factory
from exoplane.errors import OutageLog, install_error_handlers
from exoplane.exotel.client import ExotelClient
from exoplane.health import router as health_router
from exoplane.integrations.calls.endpoints import router as calls_router
from exoplane.integrations.calls.operator_endpoints import router as app_calls_router
from exoplane.integrations.calls.writer import HookWriter
from exoplane.integrations.endpoints import routers as integrations_routers
from exoplane.logs import configure_logging
from exoplane.media.bots import discover_bots
from exoplane.media.endpoints import router as media_router
from exoplane.middleware import RequestContextMiddleware, carries_secret
from exoplane.openapi import install_openapi
from exoplane.ratelimit import RateLimiter
from exoplane.security import Vault, load_secret_key
from exoplane.state import AppState
from exoplane.stats.endpoints import router as stats_router
from exoplane.stats.service import RecentStats
from exoplane.voicebot.endpoints import router as voicebot_router
from exoplane.webhooks.endpoints import router as webhooks_router
from exoplane.webhooks.operator_endpoints import router as webhook_operators_router
from exoplane.webhooks.service import NoLocalDelivery
from exoplane.webhooks.worker import WebhookWorker

REDIS_CONNECTIONS = 100
REDIS_WAIT_SECONDS = 5.0
# The garbage collector's thresholds while serving (CPython's defaults are 700, 10, 10). A
# request or media frame allocates many objects that die young; at the defaults the young
# generation was collected every request or two. Webhooks at full speed, two runs each:
# 1,869 -> 2,093/s on PostgreSQL and 1,899 -> 2,121/s on SQLite.
GC_THRESHOLDS = (10_000, 50, 10)


def create_app(settings: Settings | None = None, *, run_worker: bool = False) -> FastAPI:
    """The ASGI app. With ``run_worker`` the webhook delivery worker runs beside it."""
    settings = settings or Settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        secret_key = load_secret_key(settings)
        engine = create_engine(
            settings.database_url,
            connect_timeout_seconds=settings.database_connect_timeout_seconds,
            statement_timeout_seconds=settings.database_statement_timeout_seconds,
        )
        sessions = create_session_factory(engine)
        try:
            await check_cluster_key(sessions, secret_key)
        except BaseException:
            await engine.dispose()
            raise
        # A burst waits for a free connection rather than overflowing the pool: an overflow
        # error would count as the limiter being down, and let the request through uncounted.
        redis_pool = (
            BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=REDIS_CONNECTIONS,
                timeout=REDIS_WAIT_SECONDS,
                # A Redis that accepts but never answers fails a call in this long, not the
                # driver's default of never (the rate limiter then counts locally).
                socket_connect_timeout=settings.redis_timeout_seconds,
                socket_timeout=settings.redis_timeout_seconds,
            )
            if settings.redis_url
            else None
        )
        vault = Vault(secret_key)
        worker = WebhookWorker(settings, sessions, vault) if run_worker else None
        delivery = worker or NoLocalDelivery()
        wake_webhooks = delivery.wake
        hooks = HookWriter(sessions, vault, delivery)
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            vault=vault,
            rate_limiter=RateLimiter.from_settings(settings, redis_pool),
            sign_in_limiter=RateLimiter.from_settings(
                settings, redis_pool, limit_text=settings.console_sign_in_limit, name="sign-in"
            ),
            redis_pool=redis_pool,
            reader=Reader(engine),
            capabilities=Capabilities(secret_key),
            exotel=ExotelClient(timeout=settings.exotel_timeout_seconds),
            bots=discover_bots(),
            wake_webhooks=wake_webhooks,
            hooks=hooks,
            recent_stats=RecentStats(),
        )
        hooks.start()
        worker_task = asyncio.create_task(worker.run()) if worker else None
        compile_templates()
        # Modules, routes, models and this state live as long as the process. Left to the
        # collector, each full collection walks all of them (~170,000 objects, 50-100 ms)
        # while every request waits; frozen, a full collection only sees what requests make.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            yield {"exoplane": state}
        finally:
            await hooks.stop()
            if worker is not None and worker_task is not None:
                worker.stop()
                await worker_task
            await state.rate_limiter.aclose()
            await state.sign_in_limiter.aclose()
            state.reader.close()
            await state.exotel.aclose()
            await engine.dispose()
            if redis_pool is not None:
                await redis_pool.aclose()
            gc.unfreeze()

    app = FastAPI(
        title="exoplane",
        version=__version__,
        description="Self-hostable implementation of Exotel's integration platform.",
        lifespan=lifespan,
        # Exotel's clients are not all careful with Content-Type; auth is by header, not
        # cookie, so reading any body as JSON opens no cross-site hole.
        strict_content_type=False,
        # A path with a trailing slash is another path (a 404), not a redirect built from the
        # request's Host header.
        redirect_slashes=False,
        # Checking for configured providers costs every request a few microseconds.
        telemetry=TELEMETRY_ON if settings.opentelemetry else TELEMETRY_OFF,
        # Served by install_openapi() from local assets, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    # One log line per kind of outage per interval, whichever of the two noticed it.
    outages = OutageLog()
    install_error_handlers(app, outages)

    # Routes are tried in order, each at a cost: Exotel's hooks (several for every call)
    # first, then the API, and the probes last.
    routers = (
        calls_router,
        *integrations_routers,
        webhooks_router,
        webhook_operators_router,
        app_calls_router,
        voicebot_router,
        admin_router,
        admin_apps_router,
        stats_router,
        media_router,
        health_router,
        console_router,
        console_tenants_router,
        console_traffic_router,
        console_portal_router,
    )
    for router in routers:
        _add_routes(app, router)
    app.mount(CONSOLE_STATIC, console_static(), name="console-static")
    install_openapi(app)
    install_console_error_pages(app)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match"],
            expose_headers=["X-Request-ID", "ETag", "Retry-After", "RateLimit-Limit"],
        )
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, outages=outages
    )
    return app


def create_app_with_worker() -> FastAPI:
    """The app with the webhook worker beside it: what each of ``serve --workers N``'s
    processes runs (uvicorn imports it by name)."""
    return create_app(run_worker=True)


# A portal link being opened has its token in the path: no span or metric of it at all.
TELEMETRY_ON: TelemetryConfig = {
    "tracing": True,
    "metrics": True,
    "logs": True,
    "exclude": carries_secret,
}
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """Give the app the router's routes themselves.

    ``include_router`` adds the router as one branch, and a request into a branch is matched
    twice: once to choose the branch, once to choose the route in it. The routers here set
    their prefixes and tags on their own routes, so nothing is lost by adding those directly.
    """
    app.router.routes.extend(router.routes)
