from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from traction.store.state import Base, UTCDateTime, utcnow


class ReactorCursor(Base):
    """How far in the event log (by `seq`) each reactor has got: at-least-once delivery."""

    __tablename__ = "reactor_cursors"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
