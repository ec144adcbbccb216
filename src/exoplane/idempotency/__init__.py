"""``Idempotency-Key``: a retried create returns the first response instead of acting twice."""

from exoplane.idempotency.service import Outcome, fingerprint, run_once

__all__ = ["Outcome", "fingerprint", "run_once"]
