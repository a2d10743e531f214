"""The StateStore: one SQLAlchemy engine, one declarative Base, Alembic migrations.

SQLite is tuned for a single embedded writer (WAL, synchronous=NORMAL is not enough for
"acknowledged means on disk", so FULL); PostgreSQL needs nothing special.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored as naive UTC everywhere (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def insert_for(session: Session, table: Any) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (both stores speak it): an upsert stays
    one statement, so two processes writing the same row do not race between a read and a
    write."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def new_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex


def make_engine(url: str, synchronous: Callable[[], str] = lambda: "FULL") -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous()}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # deleted rows are overwritten with zeros, not left in free pages (erasure)
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class StateStore:
    """Engine + session factory. `session()` is a unit of work: commit on success."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._synchronous = "FULL"
        self.engine = make_engine(url, lambda: self._synchronous)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """For a load that is started over if it fails (the demo's build): SQLite commits
        without waiting for the disk each time (a commit waits 0.4 ms for it here, and the
        demo makes tens of thousands), and everything reaches the disk once, at the end. A
        power cut meanwhile may lose the last commits, never the file's consistency (WAL with
        synchronous=NORMAL); a crashed process loses nothing. PostgreSQL: unchanged."""
        if not self.url.startswith("sqlite"):
            yield
            return
        self._synchronous = "NORMAL"
        self.engine.dispose()  # connections are made again, with the setting
        try:
            yield
        finally:
            self._synchronous = "FULL"
            self.engine.dispose()
            with self.engine.connect() as c:  # the log synced, then the file
                c.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def migrate(self) -> None:
        migrate(self.engine)

    def scrub(self) -> None:
        """After an erasure: SQLite's write-ahead log may still hold old page images with the
        deleted rows; a truncating checkpoint moves them into the (zeroed) file and empties
        it. PostgreSQL reclaims dead rows at VACUUM (see docs/privacy.md)."""
        if self.url.startswith("sqlite"):
            with self.engine.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def ping(self) -> bool:
        from sqlalchemy import text

        with self.engine.connect() as c:
            c.execute(text("SELECT 1"))
        return True

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent; run at start-up and by `traction migrate`)."""
    from alembic import command

    import traction.models  # noqa: F401  (registers every table on Base.metadata)

    command.upgrade(alembic_config(engine), "head")
