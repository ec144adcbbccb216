"""call timeline: the steps of each call, and the CallSid of each webhook event

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("app_id", sa.String(length=36), nullable=True),
        sa.Column("call_sid", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_call_events_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
    )
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.create_index("ix_call_events_call", ["app_id", "call_sid", "id"], unique=False)
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("call_sid", sa.String(length=100), nullable=True))
        batch_op.create_index("ix_webhook_events_call", ["app_id", "call_sid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_events_call")
        batch_op.drop_column("call_sid")
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.drop_index("ix_call_events_call")
    op.drop_table("call_events")
