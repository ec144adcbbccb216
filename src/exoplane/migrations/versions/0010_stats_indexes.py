"""stats indexes: each series of GET /api/v1/stats is read from an index on (time, value)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_calls_started_status", "calls", ["created_at", "status"]),
    ("ix_webhook_deliveries_queued_status", "webhook_deliveries", ["created_at", "status"]),
    ("ix_webhook_attempts_made_latency", "webhook_attempts", ["created_at", "latency_ms"]),
    ("ix_call_events_kind_at", "call_events", ["kind", "at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
