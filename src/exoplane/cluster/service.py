"""The cluster key check every serving process makes before it starts."""

from __future__ import annotations

import hmac

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.cluster import repository
from exoplane.db import unit_of_work
from exoplane.security import SecretKeyError, Vault, key_fingerprint

KEY_MISMATCH = (
    "EXOPLANE_SECRET_KEY does not match the key this database was set up with; "
    "every process sharing a database must use the same key"
)


async def check_cluster_key(sessions: async_sessionmaker[AsyncSession], secret_key: bytes) -> None:
    """Record the key's fingerprint on first start; refuse a key whose fingerprint differs.

    A database written before fingerprints were kept is checked once against a secret it
    holds, so that the first process to start on it cannot record the wrong key.
    """
    fingerprint = key_fingerprint(secret_key)
    async with unit_of_work(sessions) as session:
        if await repository.record_fingerprint(session, fingerprint):
            sample = await repository.any_encrypted_secret(session)
            if sample is not None and not Vault(secret_key).can_decrypt(sample):
                raise SecretKeyError(KEY_MISMATCH)
            return
        stored = await repository.stored_fingerprint(session)
    if stored is None or not hmac.compare_digest(stored, fingerprint):
        raise SecretKeyError(KEY_MISMATCH)
