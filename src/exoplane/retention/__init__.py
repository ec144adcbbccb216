"""Old rows pruned: webhook attempts and idempotency keys past ``EXOPLANE_RETENTION_DAYS``."""
