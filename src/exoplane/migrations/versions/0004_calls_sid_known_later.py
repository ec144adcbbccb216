"""a placed call is recorded before Exotel gives its CallSid

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.alter_column(
            "call_sid", existing_type=sa.String(length=100), existing_nullable=False, nullable=True
        )


def downgrade() -> None:
    op.execute("UPDATE calls SET call_sid = 'unknown:' || id WHERE call_sid IS NULL")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.alter_column(
            "call_sid", existing_type=sa.String(length=100), existing_nullable=True, nullable=False
        )
