from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from traction.store.state import Base, UTCDateTime


class CatalogEvent(Base):
    """An event name seen in a workspace, its volume, and what people wrote about it."""

    __tablename__ = "catalog_events"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    volume: Mapped[int] = mapped_column(BigInteger, default=0)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    applied_seq: Mapped[int] = mapped_column(BigInteger, default=0)  # counted up to this seq
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)


class CatalogProperty(Base):
    """A property of an event (source 'event'), or a person or account trait ('person',
    'account', with event ''): its types, volume and top values."""

    __tablename__ = "catalog_properties"
    __table_args__ = (UniqueConstraint("workspace_id", "source", "event", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    event: Mapped[str] = mapped_column(String(200), default="")
    name: Mapped[str] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    types: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    top_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    applied_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    description: Mapped[str] = mapped_column(Text, default="")
