"""Capability tokens: unguessable signatures bound to what a URL may do.

Exotel calls the URLs exoplane hands it (the Connect applet's dynamic URL, Passthru hooks,
StatusCallbacks) without credentials of its own; each URL carries ``sig``, an HMAC over its
purpose and the ids it is bound to, so a URL for one app or call is useless for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from exoplane.security import derive_key

PARAMETER = "sig"


class Capabilities:
    def __init__(self, secret_key: bytes) -> None:
        self._key = derive_key(secret_key, "capability")

    def sign(self, purpose: str, *ids: str) -> str:
        message = "\x1f".join((purpose, *ids)).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode()

    def verify(self, presented: str | None, purpose: str, *ids: str) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.sign(purpose, *ids).encode())
