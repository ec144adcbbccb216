"""Standard Webhooks signatures (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_signing_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_headers(
    secrets_: Iterable[str], message_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    """Headers for one delivery, signed with every given secret.

    During a rotation the old and the new secret both sign, space-separated as the spec
    allows, so receivers verify with whichever one they hold.
    """
    signatures = " ".join(Webhook(secret).sign(message_id, timestamp, body) for secret in secrets_)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
    }
