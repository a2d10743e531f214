"""engage: per-message bounces and unsubscribes

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 15:12:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("engage_deliveries") as batch:
        batch.add_column(sa.Column("unsubscribed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("engage_deliveries") as batch:
        batch.drop_column("unsubscribed_at")
