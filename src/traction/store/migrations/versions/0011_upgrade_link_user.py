"""billing: who an upgrade link is for (their purchase is self-serve)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 08:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_upgrade_links") as batch:
        batch.add_column(sa.Column("user_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_upgrade_links") as batch:
        batch.drop_column("user_id")
