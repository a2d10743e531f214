"""billing: catalog versions, plan versions, subscriptions, usage, consume records, meter values

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _ws() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "workspace_id",
        sa.String(length=40),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "billing_catalogs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ws(),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("diff", sa.JSON(), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("workspace_id", "version"),
    )
    op.create_table(
        "billing_plan_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ws(),
        sa.Column("plan_key", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("workspace_id", "plan_key", "version"),
    )
    op.create_table(
        "billing_subscriptions",
        sa.Column("id", sa.String(length=40), primary_key=True),
        _ws(),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("plan_key", sa.String(length=63), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("period_end", sa.DateTime(), nullable=False),
        sa.Column("trial_end", sa.DateTime(), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("pending_plan_key", sa.String(length=63), nullable=True),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("canceled_at", sa.DateTime(), nullable=True),
    )
    op.create_index(
        "ix_billing_subscriptions_account", "billing_subscriptions", ["workspace_id", "account"]
    )
    op.create_table(
        "billing_usage",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ws(),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("feature", sa.String(length=63), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("window_end", sa.DateTime(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("workspace_id", "account", "feature", "window_start"),
    )
    op.create_table(
        "billing_usage_records",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ws(),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("feature", sa.String(length=63), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("workspace_id", "idempotency_key"),
    )
    op.create_table(
        "billing_meter_values",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ws(),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("feature", sa.String(length=63), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("window_end", sa.DateTime(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("latest_at", sa.DateTime(), nullable=True),
        sa.Column("latest_seq", sa.BigInteger(), nullable=False),
        sa.Column("applied_seq", sa.BigInteger(), nullable=False),
        sa.Column("distinct_values", sa.JSON(), nullable=False),
        sa.UniqueConstraint("workspace_id", "account", "feature", "window_start"),
    )


def downgrade() -> None:
    for t in ("billing_meter_values", "billing_usage_records", "billing_usage",
              "billing_subscriptions", "billing_plan_versions", "billing_catalogs"):  # fmt: skip
        op.drop_table(t)
