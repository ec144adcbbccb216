"""webhook replays: jobs that send every failed delivery matching a filter again; the
headers each webhook attempt sent

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("webhook_attempts", sa.Column("request_headers", sa.Text(), nullable=True))
    op.create_table(
        "webhook_replays",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=True),
        sa.Column("event_type", sa.String(length=40), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("up_to_id", BIG_ID, nullable=False),
        sa.Column("after_id", BIG_ID, nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("replayed", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_replays")),
    )
    op.create_index(op.f("ix_webhook_replays_status"), "webhook_replays", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_replays_status"), table_name="webhook_replays")
    op.drop_table("webhook_replays")
    with op.batch_alter_table("webhook_attempts") as batch:
        batch.drop_column("request_headers")
