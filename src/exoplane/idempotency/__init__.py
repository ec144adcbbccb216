"""``Idempotency-Key``: a retried create returns the first response instead of acting twice."""

from exoplane.idempotency.service import Outcome, fingerprint, run_once, run_once_detached

__all__ = ["Outcome", "fingerprint", "run_once", "run_once_detached"]
