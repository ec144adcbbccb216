"""SQLAlchemy models, one module per table."""

from exoplane.models.app import App
from exoplane.models.app_settings import AppSettings
from exoplane.models.audit import AuditEntry
from exoplane.models.base import Base
from exoplane.models.call import Call
from exoplane.models.call_event import CallEvent
from exoplane.models.cluster_key import ClusterKey
from exoplane.models.console_session import ConsoleSession
from exoplane.models.customer import Customer
from exoplane.models.idempotency_key import IdempotencyKey
from exoplane.models.operator import Operator
from exoplane.models.portal_link import PortalLink
from exoplane.models.stats_hour import StatsHour
from exoplane.models.token import Token
from exoplane.models.user import User
from exoplane.models.voicebot import Did, ExotelIntegration, PlatformSettings
from exoplane.models.webhook import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookReplay,
)

__all__ = [
    "App",
    "AppSettings",
    "AuditEntry",
    "Base",
    "Call",
    "CallEvent",
    "ClusterKey",
    "ConsoleSession",
    "Customer",
    "Did",
    "ExotelIntegration",
    "IdempotencyKey",
    "Operator",
    "PlatformSettings",
    "PortalLink",
    "StatsHour",
    "Token",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookReplay",
]
