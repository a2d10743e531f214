"""Journeys, their entries (runs), deliveries and the suppression list, on the StateStore.

A run is one person's pass through a journey: its current step and when it is next due, with
a lease so several workers can share the work (PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite
has one writer). A delivery is one message's effect, unique by its idempotency key (run x
step): created in the same transaction that moves the run past the step, sent by the
delivery worker, retried with backoff."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from traction.store.state import Base, UTCDateTime, utcnow


class JourneyRow(Base):
    __tablename__ = "engage_journeys"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(100))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Run(Base):
    __tablename__ = "engage_runs"
    __table_args__ = (
        UniqueConstraint("workspace_id", "journey", "person_id", "entry_no"),
        Index("ix_engage_runs_due", "status", "next_at"),
        Index("ix_engage_runs_person", "workspace_id", "person_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    journey: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[str] = mapped_column(String(40))
    entry_no: Mapped[int] = mapped_column(Integer, default=1)
    arm: Mapped[str] = mapped_column(String(16))  # treatment | holdout
    status: Mapped[str] = mapped_column(
        String(16), default="active"
    )  # active | goal | completed | exited
    step: Mapped[str | None] = mapped_column(String(64), nullable=True)
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    event_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    exit_reason: Mapped[str] = mapped_column(String(200), default="")
    trigger_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Delivery(Base):
    __tablename__ = "engage_deliveries"
    __table_args__ = (
        Index("ix_engage_deliveries_due", "status", "next_attempt_at"),
        Index("ix_engage_deliveries_person", "workspace_id", "person_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    idem_key: Mapped[str] = mapped_column(String(200), unique=True)
    run_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    journey: Mapped[str] = mapped_column(String(100))
    step: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(16))  # email | webhook | inapp
    # pending | sending | sent | failed (will retry) | dead | bounced | suppressed | capped | held
    # | skipped | outbox
    # in-app: pending (to show) | shown | clicked | dismissed | expired
    status: Mapped[str] = mapped_column(String(16), default="pending")
    transactional: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    target: Mapped[str] = mapped_column(String(2000), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message_id: Mapped[str] = mapped_column(String(300), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # the unsubscribe link of this very message was used (the per-message count)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Suppression(Base):
    """An address no email may go to: unsubscribed, bounced, complained, or added by hand."""

    __tablename__ = "engage_suppressions"
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(40), default="unsubscribed")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
