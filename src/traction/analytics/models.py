from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from traction.store.state import Base, UTCDateTime, new_id, utcnow


class SavedInsight(Base):
    """A named spec; validated by its kind's model before it is stored."""

    __tablename__ = "saved_insights"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ins_"))
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Dashboard(Base):
    __tablename__ = "dashboards"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dash_"))
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DashboardTile(Base):
    __tablename__ = "dashboard_tiles"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    dashboard_id: Mapped[str] = mapped_column(
        ForeignKey("dashboards.id", ondelete="CASCADE"), index=True
    )
    insight_id: Mapped[str] = mapped_column(ForeignKey("saved_insights.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)


class AnalyticsSettings(Base):
    """Per-workspace analytics configuration: which events the KPIs read."""

    __tablename__ = "analytics_settings"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    kpi_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KeptKPIValue(Base):
    """A KPI's value over a closed period, kept for the next process (`analytics.kept`)."""

    __tablename__ = "analytics_kpi_values"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    # sha256 of what the value is of: the definitions' code, the KPI, the range, the
    # workspace's KPI configuration and time zone
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    seq: Mapped[int] = mapped_column(BigInteger)  # the log's head when computed
    merges: Mapped[int] = mapped_column(Integer)
    deletions: Mapped[int] = mapped_column(Integer)
    reads_until: Mapped[datetime] = mapped_column(UTCDateTime)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
