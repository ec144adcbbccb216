"""administration: disabled customers and operators, customer secret rotation

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("previous_secret_hash", sa.String(length=64)))
    op.add_column("customers", sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True)))
    op.add_column("customers", sa.Column("disabled_at", sa.DateTime(timezone=True)))
    op.add_column("operators", sa.Column("disabled_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # Dropped one by one, not in a batch: on SQLite a batch would copy the table, and dropping
    # the old copy would cascade to every app, user and token of every customer.
    op.drop_column("operators", "disabled_at")
    op.drop_column("customers", "disabled_at")
    op.drop_column("customers", "previous_secret_expires_at")
    op.drop_column("customers", "previous_secret_hash")
