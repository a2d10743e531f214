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

from traction.store.state import Base, UTCDateTime, new_id, utcnow


class CatalogVersion(Base):
    """Every catalog applied, whole, with the diff against the one before."""

    __tablename__ = "billing_catalogs"
    __table_args__ = (UniqueConstraint("workspace_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    diff: Mapped[list[Any]] = mapped_column(JSON, default=list)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PlanVersion(Base):
    """A plan as it was sold: a price change makes a new version; subscribers keep theirs."""

    __tablename__ = "billing_plan_versions"
    __table_args__ = (UniqueConstraint("workspace_id", "plan_key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    plan_key: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscription(Base):
    __tablename__ = "billing_subscriptions"
    __table_args__ = (Index("ix_billing_subscriptions_account", "workspace_id", "account"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("sub_"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    account: Mapped[str] = mapped_column(String(200))
    plan_key: Mapped[str] = mapped_column(String(63))
    plan_version: Mapped[int] = mapped_column(Integer)
    interval: Mapped[str] = mapped_column(String(8), default="month")
    status: Mapped[str] = mapped_column(String(16))  # trialing | active | past_due | canceled
    seats: Mapped[int] = mapped_column(Integer, default=1)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    trial_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    pending_plan_key: Mapped[str | None] = mapped_column(String(63), nullable=True)  # a downgrade
    provider: Mapped[str] = mapped_column(String(16), default="manual")
    provider_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Usage(Base):
    """Consumed usage of a metered feature in one window (`POST /usage`): the row a consume
    updates with one conditional UPDATE, so a hard limit holds under any concurrency."""

    __tablename__ = "billing_usage"
    __table_args__ = (UniqueConstraint("workspace_id", "account", "feature", "window_start"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    account: Mapped[str] = mapped_column(String(200))
    feature: Mapped[str] = mapped_column(String(63))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageRecord(Base):
    """One consume request, by its idempotency key: a retry gets the same answer."""

    __tablename__ = "billing_usage_records"
    __table_args__ = (UniqueConstraint("workspace_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    account: Mapped[str] = mapped_column(String(200))
    feature: Mapped[str] = mapped_column(String(63))
    quantity: Mapped[int] = mapped_column(BigInteger)
    granted: Mapped[bool] = mapped_column(Boolean, default=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MeterValue(Base):
    """A metered feature's usage measured from events, per account and window (the meter
    reactor's running value; a recomputation from the log gives the same)."""

    __tablename__ = "billing_meter_values"
    __table_args__ = (UniqueConstraint("workspace_id", "account", "feature", "window_start"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    account: Mapped[str] = mapped_column(String(200))
    feature: Mapped[str] = mapped_column(String(63))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    value: Mapped[str] = mapped_column(Text, default="0")  # a Decimal, exact
    latest_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # LATEST
    latest_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    applied_seq: Mapped[int] = mapped_column(BigInteger, default=0)  # events up to here counted
    distinct_values: Mapped[list[str]] = mapped_column(JSON, default=list)  # UNIQUE_COUNT


class ProviderSettings(Base):
    """How a workspace takes payment: `manual` (changes apply at once) or `stripe`. The
    Stripe secret key must be stored to call Stripe; it is never shown again (docs/billing.md)."""

    __tablename__ = "billing_providers"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(String(16), default="manual")
    stripe_api_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    stripe_webhook_secret: Mapped[str | None] = mapped_column(String(300), nullable=True)
    stripe_api_base: Mapped[str | None] = mapped_column(String(300), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEvent(Base):
    """A provider's event applied once: a replay finds it here and changes nothing."""

    __tablename__ = "billing_webhook_events"
    __table_args__ = (UniqueConstraint("workspace_id", "provider", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UpgradeLink(Base):
    """A one-time-ish link to the upgrade page for one account (only its hash is stored):
    what a product hands its user when a check says no."""

    __tablename__ = "billing_upgrade_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    account: Mapped[str] = mapped_column(String(200))
    return_url: Mapped[str] = mapped_column(String(2000))
    feature: Mapped[str | None] = mapped_column(String(63), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    user_id: Mapped[str | None] = mapped_column(String(200), nullable=True)  # who it is for
