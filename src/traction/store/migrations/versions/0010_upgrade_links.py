"""billing: links to the upgrade page

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_upgrade_links",
        sa.Column("token_hash", sa.String(length=64), primary_key=True),
        sa.Column(
            "workspace_id",
            sa.String(length=40),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("return_url", sa.String(length=2000), nullable=False),
        sa.Column("feature", sa.String(length=63), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("billing_upgrade_links")
