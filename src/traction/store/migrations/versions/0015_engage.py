"""engage: journeys, runs, deliveries, suppressions

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 11:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _ws(index: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "workspace_id",
        sa.String(length=40),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
        index=index,
    )


def upgrade() -> None:
    op.create_table(
        "engage_journeys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ws(index=True),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("workspace_id", "key"),
    )
    op.create_table(
        "engage_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ws(),
        sa.Column("journey", sa.String(length=100), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("entry_no", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("step_started_at", sa.DateTime(), nullable=False),
        sa.Column("next_at", sa.DateTime(), nullable=True),
        sa.Column("event_seen_at", sa.DateTime(), nullable=True),
        sa.Column("entered_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("exit_reason", sa.String(length=200), nullable=False),
        sa.Column("trigger_seq", sa.BigInteger(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("workspace_id", "journey", "person_id", "entry_no"),
    )
    op.create_index("ix_engage_runs_due", "engage_runs", ["status", "next_at"])
    op.create_index("ix_engage_runs_person", "engage_runs", ["workspace_id", "person_id"])
    op.create_table(
        "engage_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ws(),
        sa.Column("idem_key", sa.String(length=200), nullable=False, unique=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("journey", sa.String(length=100), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transactional", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.Column("clicked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_engage_deliveries_due", "engage_deliveries", ["status", "next_attempt_at"])
    op.create_index(
        "ix_engage_deliveries_person", "engage_deliveries", ["workspace_id", "person_id"]
    )
    op.create_table(
        "engage_suppressions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ws(),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("workspace_id", "email"),
    )


def downgrade() -> None:
    for t in ("engage_suppressions", "engage_deliveries", "engage_runs", "engage_journeys"):
        op.drop_table(t)
