from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from traction.store.state import Base, UTCDateTime, utcnow


class Experiment(Base):
    """An experiment's definition (hypothesis, variations, unit, dates, metrics, method), and
    for a safe rollout the state the maintenance loop moves."""

    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(100))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A safe rollout's progress: status, step, when it started, why it stopped, its log.
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
