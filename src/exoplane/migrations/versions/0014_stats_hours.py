"""stats hours: each closed hour's counts per chart series, kept by the worker so the
charts of the last day read one small table

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stats_hours",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("series", sa.String(length=32), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hour", "series", name=op.f("pk_stats_hours")),
    )


def downgrade() -> None:
    op.drop_table("stats_hours")
