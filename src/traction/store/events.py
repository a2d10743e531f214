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

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from traction.store.journal import Entry, Journal
from traction.store.tail import TAIL_MB, LogTail

log = logging.getLogger(__name__)

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


def _insert(verb: str) -> str:
    return (
        f"{verb} INTO events (dedupe_key, {', '.join(EVENT_COLUMNS)}) "
        f"SELECT {DEDUPE_KEY}, {', '.join(EVENT_COLUMNS)} FROM _incoming"
    )


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
    (
        2,
        """
-- What was deleted (never who): erasures and retention. A row makes cached results stale;
-- `purged` says whether the bytes have left the file yet (a purge rewrites it).
CREATE TABLE IF NOT EXISTS deletions (
    workspace_id VARCHAR NOT NULL,
    deleted_at TIMESTAMP NOT NULL,
    reason VARCHAR NOT NULL,
    events BIGINT NOT NULL,
    purged BOOLEAN NOT NULL DEFAULT false
);
""",
    ),
    (
        3,
        """
-- The last side-journal entry moved into this file (`store/journal.py`): one row.
CREATE TABLE IF NOT EXISTS journal_applied (id BIGINT NOT NULL);
INSERT INTO journal_applied SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM journal_applied);
""",
    ),
]

# A journal's backlog moves into the file this many rows at a time (a chunk is one
# append: ~15 ms here), so neither the writer nor the checkpoint's thread holds the file for
# the whole backlog at once.
CHUNK_ROWS = 4_000

# Rewritten whole by a purge (the events table is copied by seq, in two steps).
_SMALL_TABLES = (
    "schema_version",
    "person_traits",
    "account_traits",
    "person_overrides",
    "deletions",
    "journal_applied",
)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


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


@dataclass(frozen=True)
class EventKinds:
    """Which events a reader wants: those with one of these names, or of one of these types
    (`identify`, ...). A reactor that acts on a few kinds reads only those."""

    names: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    def __or__(self, other: EventKinds) -> EventKinds:
        return EventKinds(self.names | other.names, self.types | other.types)


class EventFeed(Protocol):
    """What a reactor runner reads of the log: the EventStore itself, or the server's log
    served to a reactor process (`reactor_process`)."""

    def max_seq(self) -> int: ...
    def events_after(
        self,
        seq: int,
        limit: int,
        columns: Sequence[str] | None = None,
        *,
        upto: int | None = None,
        only: EventKinds | None = None,
    ) -> list[dict[str, Any]]: ...


class EventStore(EventFeed, Protocol):
    def append(
        self, table: pa.Table, merges: Sequence[Merge] = (), traits: Sequence[Traits] = ()
    ) -> int: ...
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


@dataclass(frozen=True)
class PurgeResult:
    bytes_before: int
    bytes_after: int
    seconds: float
    deletions: int  # deletion records whose bytes left the file


class _ReadGate:
    """Reads share the connection; a purge swaps the file under it, so it waits for the
    reads in flight (interrupting those still running after a grace period) and holds new
    ones back until the new file is open."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: set[duckdb.DuckDBPyConnection] = set()
        self._closed = False

    def enter(self, open_cursor: Any) -> duckdb.DuckDBPyConnection:
        with self._cond:
            while self._closed:
                self._cond.wait()
            cur: duckdb.DuckDBPyConnection = open_cursor()
            self._active.add(cur)
            return cur

    def leave(self, cur: duckdb.DuckDBPyConnection) -> None:
        with self._cond:
            self._active.discard(cur)
            self._cond.notify_all()
        cur.close()

    @contextmanager
    def exclusive(self, grace_seconds: float) -> Iterator[None]:
        with self._cond:
            self._closed = True
            deadline = time.monotonic() + grace_seconds
            while self._active:
                if time.monotonic() >= deadline:
                    for cur in self._active:
                        cur.interrupt()  # the reader gets an error and may retry
                    deadline = float("inf")
                self._cond.wait(timeout=0.05)
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Rows as dicts, their JSON columns parsed column by column: a quarter faster than a
    loop doing both per row (the reactors read the whole log through here)."""
    cols = tuple(d[0] for d in cur.description or [])
    out = [dict(zip(cols, r, strict=False)) for r in cur.fetchall()]  # (a row has every column)
    return _parse_json(out, cols)


def as_python(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """A column as Python values. Arrow's `to_pylist` makes each naive timestamp at ~3 µs
    here; through numpy it is ~0.1 µs, the same `datetime` (None for a null)."""
    t = column.type
    if pa.types.is_timestamp(t) and t.tz is None and t.unit in ("s", "ms", "us"):
        listed: list[Any] = column.to_numpy(zero_copy_only=False).tolist()
        return listed
    return column.to_pylist()


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """The rows `events_after` gives, from what `events_after_arrow` gave (in the process
    that reads them: a reactor process turns the Arrow into Python, not the server)."""
    names = table.column_names
    columns = [as_python(c) for c in table.columns]
    rows = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    return _parse_json(rows, names)


def _parse_json(out: list[dict[str, Any]], cols: Sequence[str]) -> list[dict[str, Any]]:
    loads = orjson.loads
    for key in ("properties", "context"):
        if key in cols:
            for row in out:
                if (value := row[key]).__class__ is str:
                    row[key] = loads(value)
    return out


def _first_of_each(table: pa.Table) -> pa.Table:
    """The first row of each (workspace, event id), as the key keeps the first stored (held
    appends are applied together; DuckDB's OR IGNORE keeps any one of a batch's copies)."""
    keys = pc.binary_join_element_wise(table["workspace_id"], table["event_id"], "\x00")
    if pc.count_distinct(keys).as_py() == table.num_rows:
        return table
    first: dict[str, int] = {}
    for i, k in enumerate(keys.to_pylist()):
        first.setdefault(k, i)
    return table.take(pa.array(sorted(first.values()), pa.int64()))


def _last_seq(table: pa.Table) -> int:
    return int(pc.max(table.column("seq")).as_py() or 0) if table.num_rows else 0


def _after(
    seq: int,
    limit: int,
    columns: Sequence[str] | None,
    upto: int | None,
    only: EventKinds | None,
) -> tuple[str, list[object]]:
    if columns is None:
        select = "*"
    else:
        unknown = set(columns) - set(EVENT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown event columns: {sorted(unknown)}")
        select = ", ".join(dict.fromkeys(["seq", *columns]))
    where = "seq > ? AND seq <= ?"
    params: list[object] = [seq, upto if upto is not None else 2**62]
    if only is not None:
        where += " AND (list_contains(?::VARCHAR[], name) OR list_contains(?::VARCHAR[], type))"
        params += [sorted(only.names), sorted(only.types)]
    sql = f"SELECT {select} FROM ({RESOLVED_EVENTS}) WHERE {where} ORDER BY seq LIMIT ?"
    return sql, [*params, limit]


class DuckDBEventStore:
    """One DuckDB file; one connection for writes, a cursor per read (DuckDB is thread-safe
    across cursors of one connection, and a read never waits for a commit)."""

    def __init__(
        self,
        path: Path | str,
        *,
        threads: int | None = None,
        checkpoint_mb: int | None = None,
        tail_mb: int = TAIL_MB,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.threads = threads
        self.checkpoint_mb = checkpoint_mb
        self._con = self._connect()
        self._migrate()
        self._write_lock = threading.Lock()
        # erasure, retention and purge exclude each other (a purge copies, then swaps)
        self.maintenance_lock = threading.Lock()
        self._gate = _ReadGate()
        # the latest appends' rows, for the reactors' reads of the head (and their shapes)
        self._max_seq = self._stored_max_seq()
        self.tail = LogTail(EVENT_SCHEMA, self._max_seq, tail_mb * 2**20)
        self._shapes: dict[tuple[str, ...] | None, pa.Schema] = {}
        # appends acknowledged while a checkpoint runs, on disk in the journal (`_hold`)
        self._journal = Journal(self.path.with_name(self.path.name + ".journal"))
        self._held: list[Entry] = []
        self._checkpoint: threading.Thread | None = None  # the checkpoint, then its drain
        self._next_checkpoint = 0.0  # (monotonic) none starts before this
        self._closing = False
        self._journal_id = self._replay()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise EventStoreLocked(
                    f"{self.path} is in use by another Traction process (a running `traction serve`?). "
                    "Stop it, or send the data through its HTTP API instead."
                ) from e
            raise
        if self.threads:
            con.execute(f"SET threads = {int(self.threads)}")
        if self.checkpoint_mb:
            # The store checkpoints at `checkpoint_mb` itself, in the background (`_checkpoint_
            # then_drain`); DuckDB's own, inside a commit, is the backstop at four times that.
            # (One setting for the whole database, so every cursor's commits follow it.)
            con.execute(f"SET checkpoint_threshold = '{4 * int(self.checkpoint_mb)}MB'")
        return con

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
        return int(self._value("SELECT max(version) FROM schema_version") or 0)

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for reads (DuckDB is thread-safe across cursors of one connection, and a
        read never waits for a commit). Every read goes through here, so a purge can swap
        the file between reads."""
        cur = self._gate.enter(self._con.cursor)
        try:
            yield cur
        finally:
            self._gate.leave(cur)

    def _value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.reading() as cur:
            row = cur.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    def append(
        self, table: pa.Table, merges: Sequence[Merge] = (), traits: Sequence[Traits] = ()
    ) -> int:
        """Insert the rows not stored yet and record merges, in one transaction; returns inserted count.

        `table` must not hold the same (workspace, event id) twice (the writer dedupes a group).

        While the file checkpoints in the background, the append goes to the journal and is
        readable once the checkpoint is over (`settle` waits for that); it counts as inserted
        whole then (a duplicate among its rows is found when it is applied)."""
        with self._write_lock:
            if self._checkpoint is not None:
                self._hold(table, merges, traits)
                return table.num_rows
            inserted = self._store(table, merges, traits)
            self._maybe_checkpoint()
            return inserted

    def _store(
        self,
        table: pa.Table,
        merges: Sequence[Merge],
        traits: Sequence[Traits],
        applied: int | None = None,
    ) -> int:
        """Into the file (the write lock held); `applied`: the journal entry this moves in,
        recorded in the same transaction."""
        try:
            inserted = self._append(table, merges, traits, "INSERT", applied)
        except duckdb.ConstraintException:
            inserted = self._append(table, merges, traits, "INSERT OR IGNORE", applied)
            self.tail.changed(_last_seq(table))
            if inserted:  # (which rows, the file knows)
                self._max_seq = self._stored_max_seq()
            return inserted
        # the tail first: a reader that sees the new last seq finds the rows held
        if merges:
            self.tail.changed(_last_seq(table))
        else:
            self.tail.stored(table)
        self._max_seq = max(self._max_seq, _last_seq(table))  # every row was stored
        return inserted

    # -- checkpoints in the background, and the journal meanwhile ------------------------

    def _maybe_checkpoint(self) -> None:
        """After a commit: start a checkpoint beside the writer once the WAL is past
        `checkpoint_mb` (with the write lock)."""
        if not self.checkpoint_mb or self._closing or time.monotonic() < self._next_checkpoint:
            return
        if not self._wal_full():
            return
        self._checkpoint = threading.Thread(
            target=self._checkpoint_then_drain, name="traction-checkpoint", daemon=True
        )
        self._checkpoint.start()

    def _checkpoint_then_drain(self) -> None:
        """Checkpoints on a cursor of its own (every commit into the file would wait for it:
        meanwhile the appends are held), then moves what was held into the file a chunk at
        a time, letting the writer's appends in between (they are held too until the
        backlog is gone, so the log keeps their order)."""
        try:
            self._checkpoint_file()
            if self._wal_full():  # (nothing moved: not tried again at every append)
                raise duckdb.Error("the WAL is as long as before the checkpoint")
        except duckdb.Error:  # (DuckDB's own threshold is the backstop)
            log.warning("background checkpoint failed; the next in a minute", exc_info=True)
            self._next_checkpoint = time.monotonic() + 60.0
        while True:
            with self._write_lock:
                try:
                    if not self._held:
                        self._journal.clear()
                        self._checkpoint = None
                        return
                    self._drain(CHUNK_ROWS)
                    continue
                except Exception:
                    log.exception("moving the journal into the event log failed; will retry")
                    if self._closing:  # (what is held stays in the journal for the next open)
                        self._checkpoint = None
                        return
            time.sleep(1.0)

    def _wal_full(self) -> bool:
        try:
            return _wal(self.path).stat().st_size >= (self.checkpoint_mb or 0) * 2**20
        except FileNotFoundError:
            return False

    def _checkpoint_file(self) -> None:
        cur = self._con.cursor()
        try:
            cur.execute("CHECKPOINT")
        finally:
            cur.close()

    def _hold(self, table: pa.Table, merges: Sequence[Merge], traits: Sequence[Traits]) -> None:
        """Into the journal, on disk before this returns (the write lock held)."""
        self._journal_id += 1
        entry = Entry(
            self._journal_id,
            table,
            [(m.workspace_id, m.old_person_id, m.person_id) for m in merges],
            [(t.workspace_id, t.kind, t.key, t.traits) for t in traits],
        )
        self._journal.write(entry)
        self._held.append(entry)

    def _drain(self, rows: int | None) -> None:
        """Moves the oldest held entries, about `rows` rows of them (None: all), into the
        file in one transaction that records the last one's id as applied."""
        take: list[Entry] = []
        n = 0
        for entry in self._held:
            if take and rows is not None and n + entry.table.num_rows > rows:
                break
            take.append(entry)
            n += entry.table.num_rows
        table = (
            _first_of_each(pa.concat_tables([e.table for e in take]))
            if len(take) > 1
            else take[0].table
        )
        merges = [Merge(*m) for e in take for m in e.merges]
        traits = [Traits(*t) for e in take for t in e.traits]
        self._store(table, merges, traits, take[-1].id)
        del self._held[: len(take)]

    def _replay(self) -> int:
        """At open: applies the journal's entries a crash left unapplied; the last id used."""
        applied = int(self._value("SELECT max(id) FROM journal_applied") or 0)
        pending = [e for e in self._journal.read() if e.id > applied]
        if pending:
            log.info("applying %d appends held while the log checkpointed", len(pending))
            self._held = list(pending)
            with self._write_lock:
                while self._held:
                    self._drain(CHUNK_ROWS)
            applied = pending[-1].id
        self._journal.clear()
        return applied

    def settle(self) -> None:
        """Waits for a background checkpoint and for what it held to be in the file: after
        this, every append acknowledged before it is readable."""
        while (running := self._checkpoint) is not None:
            running.join()

    @contextmanager
    def _settled_write(self) -> Iterator[None]:
        """The write lock, with no checkpoint running and nothing held (deletes, purges and
        closing must see every acknowledged event in the file)."""
        while True:
            self.settle()
            self._write_lock.acquire()
            if self._checkpoint is None:
                break
            self._write_lock.release()
        try:
            yield
        finally:
            self._write_lock.release()

    def _append(
        self,
        table: pa.Table,
        merges: Sequence[Merge],
        traits: Sequence[Traits],
        verb: str,
        applied: int | None = None,
    ) -> int:
        con = self._con
        # DuckDB finds `_incoming` (and `_traits`) in this frame by name (a replacement scan):
        # registering and unregistering the table were two more calls a group, a fifth of a
        # 200-event group's append on their own, and each gives up and waits for the GIL.
        _incoming = table
        if verb == "INSERT" and table.num_rows and not merges and not traits and applied is None:
            # The common group: one statement, its own transaction, in one call. (Each call
            # gives up the GIL and then waits for the request threads to hand it back: under
            # load that was a third of the append.) A plain INSERT stores every row or fails
            # on a duplicate, and then the caller retries ignoring them.
            con.execute(_insert(verb))
            return table.num_rows
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
                # one vectorised statement (executemany ran one statement a row: 1.5 ms
                # each, a third of a simulated day's commit); the last traits of a key win
                latest = {(t.workspace_id, t.key): t.traits for t in traits if t.kind == kind}
                if latest:
                    _traits = pa.table({
                        "workspace_id": [w for w, _ in latest], "key": [k for _, k in latest],
                        "traits": [orjson.dumps(v).decode() for v in latest.values()]})  # fmt: skip
                    con.execute(f"INSERT OR REPLACE INTO {kind}_traits SELECT * FROM _traits")
            inserted = 0
            if table.num_rows:
                res = con.execute(_insert(verb)).fetchone()
                inserted = int(res[0]) if res else 0
            if applied is not None:
                con.execute("UPDATE journal_applied SET id = ?", [applied])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return inserted

    def traits_mirrored(self) -> bool:
        return bool(
            self._value(
                "SELECT (SELECT count(*) FROM person_traits) + (SELECT count(*) FROM account_traits)"
            )
        )

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
        """The last seq stored. Kept by the writes rather than asked of the file: a reactor
        runner asks it several times a pass, and `MAX(seq)` scans the whole column (1.5 ms
        at 2M events here, and growing with the log)."""
        return self._max_seq

    def _stored_max_seq(self) -> int:
        """(On the write connection: the callers hold the write lock, or open the file.)"""
        row = self._con.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0]) if row else 0

    def events_after(
        self,
        seq: int,
        limit: int,
        columns: Sequence[str] | None = None,
        *,
        upto: int | None = None,
        only: EventKinds | None = None,
    ) -> list[dict[str, Any]]:
        """The log in `seq` order after `seq` (and up to `upto`, if given); only `columns`
        (plus seq) if given, which is much cheaper than whole rows for reactors that read two
        fields; only the events `only` names, if given."""
        held = self._from_tail(seq, limit, columns, upto, only)
        if held is not None:
            return rows_of(held)
        sql, params = _after(seq, limit, columns, upto, only)
        with self.reading() as cur:
            cur.execute(sql, params)
            return _rows(cur)

    def events_after_arrow(
        self,
        seq: int,
        limit: int,
        columns: Sequence[str] | None = None,
        *,
        upto: int | None = None,
        only: EventKinds | None = None,
    ) -> pa.Table:
        """`events_after` as Arrow, JSON columns as text (`rows_of` makes the same rows):
        DuckDB builds it without the GIL, so serving it to a reactor process costs the
        server little."""
        held = self._from_tail(seq, limit, columns, upto, only)
        if held is not None:
            return held
        sql, params = _after(seq, limit, columns, upto, only)
        with self.reading() as cur:
            return cur.sql(sql, params=params).to_arrow_table()

    def _from_tail(
        self,
        seq: int,
        limit: int,
        columns: Sequence[str] | None,
        upto: int | None,
        only: EventKinds | None,
    ) -> pa.Table | None:
        """The read from the rows of the latest appends, in the file's answer's shape (its
        columns, their order and types); None when the tail does not hold them all."""
        key = None if columns is None else tuple(columns)
        shape = self._shapes.get(key)
        if shape is None:
            sql, params = _after(0, 0, columns, None, None)
            with self.reading() as cur:
                shape = self._shapes[key] = cur.sql(sql, params=params).to_arrow_table().schema
        kinds = None if only is None else (only.names, only.types)
        held = self.tail.read(seq, limit, upto, shape.names, kinds)
        return None if held is None else held.cast(shape)

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
        with self.reading() as cur:
            return self._recent(cur, where, params)

    @staticmethod
    def _recent(
        cur: duckdb.DuckDBPyConnection, where: list[str], params: list[Any]
    ) -> list[dict[str, Any]]:
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
        with self.reading() as cur:
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

    def account_events(
        self, workspace_id: str, account_id: str, names: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The account's events with these names, in log order (what a meter recomputes from)."""
        with self.reading() as cur:
            cur.execute(
                "SELECT name, properties, timestamp, seq FROM events WHERE workspace_id = ? "
                "AND account_id = ? AND name IN (SELECT unnest(?::VARCHAR[])) ORDER BY seq",
                [workspace_id, account_id, list(names)],
            )
            return _rows(cur)

    def named_events(self, workspace_id: str, names: Sequence[str]) -> list[dict[str, Any]]:
        """The workspace's events with these names, in time order (what revenue metrics read)."""
        with self.reading() as cur:
            cur.execute(
                "SELECT name, properties, timestamp, seq, account_id FROM events "
                "WHERE workspace_id = ? AND name IN (SELECT unnest(?::VARCHAR[])) "
                "ORDER BY timestamp, seq",
                [workspace_id, list(names)],
            )
            return _rows(cur)

    def names_present(self, workspace_id: str, names: Sequence[str]) -> set[str]:
        """Which of `names` occur among the workspace's events."""
        if not names:
            return set()
        with self.reading() as cur:
            rows = cur.execute(
                "SELECT DISTINCT name FROM events WHERE workspace_id = ? AND name IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [workspace_id, list(names)],
            ).fetchall()
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
        return int(self._value(sql, params) or 0)

    def per_minute(self, workspace_id: str, since: datetime) -> dict[datetime, int]:
        """Events received per minute since `since`, for the live view (by arrival, not event time)."""
        with self.reading() as cur:
            cur.execute(
                "SELECT date_trunc('minute', received_at) AS m, COUNT(*) FROM events "
                "WHERE workspace_id = ? AND received_at >= ? GROUP BY m",
                [workspace_id, since],
            )
            return {r[0]: int(r[1]) for r in cur.fetchall()}

    # -- deleting (erasure, retention) and purging ---------------------------------------------

    def merged_ids(self, workspace_id: str, person_id: str) -> tuple[set[str], set[str]]:
        """The person's ids (theirs and every person merged into them) and every distinct id
        their events carry."""
        with self.reading() as cur:
            rows = cur.execute(
                "SELECT old_person_id FROM person_overrides WHERE workspace_id = ? AND person_id = ?",
                [workspace_id, person_id],
            ).fetchall()
            pids = {person_id} | {r[0] for r in rows}
            rows = cur.execute(
                "SELECT DISTINCT anonymous_id, user_id, distinct_id FROM events "
                "WHERE workspace_id = ? AND person_id IN (SELECT unnest(?::VARCHAR[]))",
                [workspace_id, sorted(pids)],
            ).fetchall()
        return pids, {x for r in rows for x in r if x}

    def delete_people(self, workspace_id: str, person_ids: Sequence[str]) -> int:
        """Deletes the people's events, merges and traits in one transaction and records how
        many (never whom). Queries stop seeing them at once; the bytes stay in the file until
        `purge` rewrites it (DuckDB reuses freed blocks but does not clear them)."""
        ids = sorted(set(person_ids))
        return self._delete(
            workspace_id,
            "erasure",
            [
                ("events", "person_id IN (SELECT unnest($ids::VARCHAR[]))"),
                (
                    "person_overrides",
                    "old_person_id IN (SELECT unnest($ids::VARCHAR[])) "
                    "OR person_id IN (SELECT unnest($ids::VARCHAR[]))",
                ),
                ("person_traits", "person_id IN (SELECT unnest($ids::VARCHAR[]))"),
            ],
            {"ids": ids},
        )

    def delete_before(self, workspace_id: str, before: datetime) -> int:
        """Retention: deletes the workspace's events whose time is before `before`."""
        return self._delete(
            workspace_id, "retention", [("events", "timestamp < $before")], {"before": before}
        )

    def _delete(
        self,
        workspace_id: str,
        reason: str,
        where: Sequence[tuple[str, str]],
        params: dict[str, Any],
    ) -> int:
        with self._settled_write():
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                deleted = rows = 0
                for table, cond in where:
                    row = con.execute(
                        f"DELETE FROM {table} WHERE workspace_id = $ws AND ({cond})",
                        {"ws": workspace_id, **params},
                    ).fetchone()
                    n = int(row[0]) if row else 0
                    rows += n
                    if table == "events":
                        deleted = n
                if rows:  # nothing deleted: nothing to purge, no cached result is stale
                    con.execute(
                        "INSERT INTO deletions VALUES (?, now()::TIMESTAMP, ?, ?, false)",
                        [workspace_id, reason, deleted],
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            if rows:  # (rows it may hold are gone, or resolve otherwise)
                self._max_seq = self._stored_max_seq()
                self.tail.changed()
        return deleted

    def deletions(self, workspace_id: str) -> int:
        """How many deletions the workspace has had: part of every cached result's key."""
        return int(
            self._value("SELECT count(*) FROM deletions WHERE workspace_id = ?", [workspace_id])
            or 0
        )

    def pending_purge(self) -> int:
        """Deletions whose bytes are still in the file."""
        return int(self._value("SELECT count(*) FROM deletions WHERE NOT purged") or 0)

    def purge(self, grace_seconds: float = 10.0) -> PurgeResult:
        """Rewrites the file with only the live rows, so deleted bytes are gone from disk.

        Copies a snapshot while ingestion goes on, then, with writes paused, the rows
        committed meanwhile and the small tables, and swaps the new file in (reads in flight
        finish first). Ingestion pauses only for the second step and the swap."""
        start = time.perf_counter()
        tmp = self.path.with_name(self.path.name + ".purge")
        for f in (tmp, _wal(tmp)):
            f.unlink(missing_ok=True)
        before = self.path.stat().st_size
        with self.maintenance_lock:
            # a cursor outside the read gate: the swap waits for the gate's readers
            cur = self._con.cursor()
            try:
                db = cur.execute("SELECT current_database()").fetchall()[0][0]
                snapshot = cur.execute("SELECT COALESCE(max(seq), 0) FROM events").fetchall()[0][0]
                cur.execute(f"ATTACH '{tmp}' AS purge_target")
                cur.execute(f'COPY FROM DATABASE "{db}" TO purge_target (SCHEMA)')
                cur.execute(
                    "INSERT INTO purge_target.events SELECT * FROM events WHERE seq <= ?",
                    [snapshot],
                )
                with self._settled_write():
                    cur.execute(
                        "INSERT INTO purge_target.events SELECT * FROM events WHERE seq > ?",
                        [snapshot],
                    )
                    for table in _SMALL_TABLES:
                        cur.execute(f"INSERT INTO purge_target.{table} SELECT * FROM {table}")
                    n = cur.execute(
                        "UPDATE purge_target.deletions SET purged = true WHERE NOT purged"
                    ).fetchall()[0][0]
                    cur.execute("DETACH purge_target")
                    cur.close()
                    self._swap(tmp, grace_seconds)
            except BaseException:
                try:
                    cur.execute("DETACH DATABASE IF EXISTS purge_target")
                    cur.close()
                except duckdb.Error:
                    pass
                for f in (tmp, _wal(tmp)):
                    f.unlink(missing_ok=True)
                raise
        return PurgeResult(before, self.path.stat().st_size, time.perf_counter() - start, int(n))

    def _swap(self, new_file: Path, grace_seconds: float) -> None:
        """Puts `new_file` in place of the store's file (writes are paused by the caller)."""
        with self._gate.exclusive(grace_seconds):
            self._con.execute("CHECKPOINT")  # everything in the main file: the old WAL is moot
            self._con.close()
            os.replace(new_file, self.path)
            _wal(self.path).unlink(missing_ok=True)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._con = self._connect()
            self._max_seq = self._stored_max_seq()  # (the same rows: to be sure)
            self.tail.changed()  # (the same rows; held again from here on all the same)

    def ping(self) -> bool:
        self._value("SELECT 1")
        return True

    def close(self) -> None:
        self._closing = True  # (no new checkpoint starts)
        with self._settled_write():
            self._journal.close()
            self._con.close()
