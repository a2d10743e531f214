from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from traction.store.state import Base, UTCDateTime, utcnow


class Person(Base):
    __tablename__ = "persons"
    __table_args__ = (Index("ix_persons_ws_last_seen", "workspace_id", "last_seen_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    is_identified: Mapped[bool] = mapped_column(Boolean, default=False)
    traits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    merged_into: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Identity(Base):
    """A distinct id (anonymousId or userId) and the person it belongs to now."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("workspace_id", "distinct_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    distinct_id: Mapped[str] = mapped_column(String(200))
    person_id: Mapped[str] = mapped_column(String(40), index=True)
    is_user_id: Mapped[bool] = mapped_column(Boolean, default=False)


class Account(Base):
    """A group (Segment `group`, PostHog `$groupidentify`): the company a person works for."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("workspace_id", "group_key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    group_key: Mapped[str] = mapped_column(String(200))
    traits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccountMembership(Base):
    __tablename__ = "account_memberships"
    __table_args__ = (UniqueConstraint("workspace_id", "person_id", "group_key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    person_id: Mapped[str] = mapped_column(String(40), index=True)
    group_key: Mapped[str] = mapped_column(String(200))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
