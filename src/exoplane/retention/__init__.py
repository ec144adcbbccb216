"""Old rows pruned: call timeline entries, webhook attempts and idempotency keys past
``EXOPLANE_RETENTION_DAYS``."""
