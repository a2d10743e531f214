"""The EventStore: the append-only event log, DuckDB first.

One canonical row per event. Dedupe is the store's job, so it holds across restarts: the
primary key is a 128-bit hash of (workspace, event id), computed inside DuckDB. Inserts take
a fast path (plain INSERT, ~3x cheaper than INSERT OR IGNORE on a large table) and, only when
a batch holds an event stored before (a client retry), redo the batch with OR IGNORE.
Identity merges are kept beside the log as `person_overrides` (old person -> person), so
every query sees earlier anonymous events under the person they later became, without
rewriting the log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import orjson
import pyarrow as pa

EVENT_SCHEMA = pa.schema(
    [
        ("workspace_id", pa.string()),
        ("event_id", pa.string()),
        ("seq", pa.int64()),
        ("type", pa.string()),
        ("name", pa.string()),
        ("timestamp", pa.timestamp("us")),
        ("original_timestamp", pa.timestamp("us")),
        ("sent_at", pa.timestamp("us")),
        ("received_at", pa.timestamp("us")),
        ("anonymous_id", pa.string()),
        ("user_id", pa.string()),
        ("distinct_id", pa.string()),
        ("person_id", pa.string()),
        ("account_id", pa.string()),
        ("properties", pa.string()),
        ("context", pa.string()),
    ]
)
EVENT_COLUMNS = [f.name for f in EVENT_SCHEMA]
DEDUPE_KEY = "md5_number(workspace_id || chr(0) || event_id)"

# Numbered, append-only: a new schema change is a new entry, never an edit of an old one.
_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE IF NOT EXISTS events (
    dedupe_key UHUGEINT NOT NULL PRIMARY KEY,  -- md5_number(workspace_id || chr(0) || event_id)
    workspace_id VARCHAR NOT NULL,
    event_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    type VARCHAR NOT NULL,
    name VARCHAR,
    timestamp TIMESTAMP NOT NULL,
    original_timestamp TIMESTAMP,
    sent_at TIMESTAMP,
    received_at TIMESTAMP NOT NULL,
    anonymous_id VARCHAR,
    user_id VARCHAR,
    distinct_id VARCHAR NOT NULL,
    person_id VARCHAR NOT NULL,
    account_id VARCHAR,
    properties JSON,
    context JSON
);
CREATE TABLE IF NOT EXISTS person_traits (
    workspace_id VARCHAR NOT NULL,
    person_id VARCHAR NOT NULL,
    traits JSON,
    PRIMARY KEY (workspace_id, person_id)
);
CREATE TABLE IF NOT EXISTS account_traits (
    workspace_id VARCHAR NOT NULL,
    account_id VARCHAR NOT NULL,
    traits JSON,
    PRIMARY KEY (workspace_id, account_id)
);
CREATE TABLE IF NOT EXISTS person_overrides (
    workspace_id VARCHAR NOT NULL,
    old_person_id VARCHAR NOT NULL,
    person_id VARCHAR NOT NULL,
    PRIMARY KEY (workspace_id, old_person_id)
);
""",
    ),
]

# Every read goes through this: the event's person as of now, after later merges.
RESOLVED_EVENTS = """
SELECT e.* EXCLUDE (person_id, dedupe_key), COALESCE(o.person_id, e.person_id) AS person_id
FROM events e
LEFT JOIN person_overrides o
  ON o.workspace_id = e.workspace_id AND o.old_person_id = e.person_id
"""


@dataclass(frozen=True)
class Traits:
    """A person's or account's current traits, mirrored here so queries can filter on them."""

    workspace_id: str
    kind: str  # "person" | "account"
    key: str  # person id or account (group) key
    traits: dict[str, Any]


@dataclass(frozen=True)
class Merge:
    workspace_id: str
    old_person_id: str
    person_id: str


class EventStore(Protocol):
    def append(
        self, table: pa.Table, merges: Sequence[Merge] = (), traits: Sequence[Traits] = ()
    ) -> int: ...
    def max_seq(self) -> int: ...
    def events_after(
        self, seq: int, limit: int, columns: Sequence[str] | None = None
    ) -> list[dict[str, Any]]: ...
    def recent(
        self,
        workspace_id: str,
        *,
        limit: int = 100,
        name: str | None = None,
        person_id: str | None = None,
        account_id: str | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]: ...
    def count(self, workspace_id: str, *, person_id: str | None = None) -> int: ...
    def per_minute(self, workspace_id: str, since: datetime) -> dict[datetime, int]: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...


class EventStoreLocked(RuntimeError):
    """Another process has the DuckDB file open for writing."""


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description or []]
    out = []
    for r in cur.fetchall():
        row = dict(zip(cols, r, strict=True))
        for key in ("properties", "context"):
            if isinstance(row.get(key), str):
                row[key] = orjson.loads(row[key])
        out.append(row)
    return out


class DuckDBEventStore:
    """One DuckDB file; one connection for writes, a cursor per read (DuckDB is thread-safe
    across cursors of one connection, and a read never waits for a commit)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise EventStoreLocked(
                    f"{self.path} is in use by another Traction process (a running `traction serve`?). "
                    "Stop it, or send the data through its HTTP API instead."
                ) from e
            raise
        self._migrate()
        self._write_lock = threading.Lock()

    def _migrate(self) -> None:
        """Bring the file to the newest schema; each step in its own transaction."""
        con = self._con
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        (row,) = con.execute(
            "SELECT max(version) FROM schema_version"
        ).fetchall()  # drain: DuckDB 2 refuses new work while a result is open
        current = int(row[0]) if row and row[0] is not None else 0
        for version, ddl in _MIGRATIONS:
            if version > current:
                con.execute("BEGIN TRANSACTION")
                con.execute(ddl)
                con.execute("INSERT INTO schema_version VALUES (?)", [version])
                con.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        row = self.cursor().execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    def append(
        self, table: pa.Table, merges: Sequence[Merge] = (), traits: Sequence[Traits] = ()
    ) -> int:
        """Insert the rows not stored yet and record merges, in one transaction; returns inserted count.

        `table` must not hold the same (workspace, event id) twice (the writer dedupes a group)."""
        with self._write_lock:
            try:
                return self._append(table, merges, traits, "INSERT")
            except duckdb.ConstraintException:
                return self._append(table, merges, traits, "INSERT OR IGNORE")

    def _append(
        self, table: pa.Table, merges: Sequence[Merge], traits: Sequence[Traits], verb: str
    ) -> int:
        con = self._con
        con.register("_incoming", table)  # outside the transaction: an aborted one refuses it
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                for m in merges:
                    con.execute(
                        "UPDATE person_overrides SET person_id = ? WHERE workspace_id = ? AND person_id = ?",
                        [m.person_id, m.workspace_id, m.old_person_id],
                    )
                    con.execute(
                        "INSERT OR REPLACE INTO person_overrides VALUES (?, ?, ?)",
                        [m.workspace_id, m.old_person_id, m.person_id],
                    )
                for kind in ("person", "account"):
                    rows = [
                        [t.workspace_id, t.key, orjson.dumps(t.traits).decode()]
                        for t in traits
                        if t.kind == kind
                    ]
                    if rows:
                        con.executemany(
                            f"INSERT OR REPLACE INTO {kind}_traits VALUES (?, ?, ?)", rows
                        )
                inserted = 0
                if table.num_rows:
                    res = con.execute(
                        f"{verb} INTO events (dedupe_key, {', '.join(EVENT_COLUMNS)}) "
                        f"SELECT {DEDUPE_KEY}, {', '.join(EVENT_COLUMNS)} FROM _incoming"
                    ).fetchone()
                    inserted = int(res[0]) if res else 0
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.unregister("_incoming")
        return inserted

    def traits_mirrored(self) -> bool:
        row = (
            self.cursor()
            .execute(
                "SELECT (SELECT count(*) FROM person_traits) + (SELECT count(*) FROM account_traits)"
            )
            .fetchone()
        )
        return bool(row and row[0])

    def mirror_traits(self, traits: Sequence[Traits]) -> None:
        """Upsert traits without events (the writer does it with its commits)."""
        self.append(
            pa.table(
                {
                    name: pa.array([], type=f.type)
                    for name, f in zip(EVENT_SCHEMA.names, EVENT_SCHEMA, strict=True)
                }
            ),
            (),
            traits,
        )

    def max_seq(self) -> int:
        row = self.cursor().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0]) if row else 0

    def events_after(
        self, seq: int, limit: int, columns: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The log in `seq` order after `seq`; only `columns` (plus seq) if given, which is
        much cheaper than whole rows for reactors that read two fields."""
        if columns is None:
            select = "*"
        else:
            unknown = set(columns) - set(EVENT_COLUMNS)
            if unknown:
                raise ValueError(f"unknown event columns: {sorted(unknown)}")
            select = ", ".join(dict.fromkeys(["seq", *columns]))
        cur = self.cursor()
        cur.execute(
            f"SELECT {select} FROM ({RESOLVED_EVENTS}) WHERE seq > ? ORDER BY seq LIMIT ?",
            [seq, limit],
        )
        return _rows(cur)

    def recent(
        self,
        workspace_id: str,
        *,
        limit: int = 100,
        name: str | None = None,
        person_id: str | None = None,
        account_id: str | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Newest events first. Picks the top N before resolving merges (a top-N scan, not a
        join over the whole log); a person's filter includes the ids merged into them."""
        where = ["workspace_id = ?"]
        params: list[Any] = [workspace_id]
        if name:
            where.append("name = ?")
            params.append(name)
        if person_id:
            where.append(
                "person_id IN (SELECT ? UNION ALL SELECT old_person_id FROM person_overrides "
                "WHERE workspace_id = ? AND person_id = ?)"
            )
            params += [person_id, workspace_id, person_id]
        if account_id:
            where.append("account_id = ?")
            params.append(account_id)
        params += [limit, offset]
        cur = self.cursor()
        cur.execute(
            f"WITH pick AS (SELECT * FROM events WHERE {' AND '.join(where)} "
            "ORDER BY timestamp DESC, seq DESC LIMIT ? OFFSET ?) "
            "SELECT pick.* EXCLUDE (person_id, dedupe_key), "
            "COALESCE(o.person_id, pick.person_id) AS person_id FROM pick "
            "LEFT JOIN person_overrides o "
            "ON o.workspace_id = pick.workspace_id AND o.old_person_id = pick.person_id "
            "ORDER BY timestamp DESC, seq DESC",
            params,
        )
        return _rows(cur)

    def person_events(
        self, workspace_id: str, person_id: str, chunk: int = 5000
    ) -> Iterator[dict[str, Any]]:
        """Every event of the person (the ids merged into them included), oldest first, read
        in chunks: an export streams them rather than holding them all."""
        cur = self.cursor()
        cur.execute(
            "SELECT * EXCLUDE (dedupe_key) FROM events WHERE workspace_id = ? AND person_id IN "
            "(SELECT ? UNION ALL SELECT old_person_id FROM person_overrides "
            "WHERE workspace_id = ? AND person_id = ?) ORDER BY timestamp, seq",
            [workspace_id, person_id, workspace_id, person_id],
        )
        cols = [d[0] for d in cur.description or []]
        while rows := cur.fetchmany(chunk):
            for r in rows:
                row = dict(zip(cols, r, strict=True))
                row["person_id"] = person_id
                for key in ("properties", "context"):
                    if isinstance(row.get(key), str):
                        row[key] = orjson.loads(row[key])
                yield row

    def names_present(self, workspace_id: str, names: Sequence[str]) -> set[str]:
        """Which of `names` occur among the workspace's events."""
        if not names:
            return set()
        rows = (
            self.cursor()
            .execute(
                "SELECT DISTINCT name FROM events WHERE workspace_id = ? AND name IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [workspace_id, list(names)],
            )
            .fetchall()
        )
        return {r[0] for r in rows}

    def count(self, workspace_id: str, *, person_id: str | None = None) -> int:
        """All the workspace's events, or one person's (the ids merged into them included)."""
        sql, params = "SELECT COUNT(*) FROM events WHERE workspace_id = ?", [workspace_id]
        if person_id:
            sql += (
                " AND person_id IN (SELECT ? UNION ALL SELECT old_person_id FROM person_overrides"
                " WHERE workspace_id = ? AND person_id = ?)"
            )
            params += [person_id, workspace_id, person_id]
        row = self.cursor().execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    def per_minute(self, workspace_id: str, since: datetime) -> dict[datetime, int]:
        """Events received per minute since `since`, for the live view (by arrival, not event time)."""
        cur = self.cursor()
        cur.execute(
            "SELECT date_trunc('minute', received_at) AS m, COUNT(*) FROM events "
            "WHERE workspace_id = ? AND received_at >= ? GROUP BY m",
            [workspace_id, since],
        )
        return {r[0]: int(r[1]) for r in cur.fetchall()}

    def ping(self) -> bool:
        self.cursor().execute("SELECT 1").fetchone()
        return True

    def close(self) -> None:
        with self._write_lock:
            self._con.close()
