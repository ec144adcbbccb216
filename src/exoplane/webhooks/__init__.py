"""Webhooks: the outbox, signing, the delivery worker, the delivery log and replay."""
