"""The event log's side journal (`store/journal.py`): while the log's file checkpoints in the
background, appends are written there, fsynced and acknowledged, then moved into the file in
order. Nothing acknowledged is lost or stored twice, whatever moment a crash picks, and a
held entry is applied exactly once (a second application of an old merge would undo a
later one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from traction.store.events import EVENT_SCHEMA, DuckDBEventStore, Merge, Traits
from traction.store.journal import Entry, Journal, decode_all, encode

NOW = datetime(2026, 12, 6, 10)


def rows(ids: list[str], person: str = "p", seq0: int = 1) -> pa.Table:
    n = len(ids)
    cols = {
        "workspace_id": ["ws"] * n,
        "event_id": ids,
        "seq": list(range(seq0, seq0 + n)),
        "type": ["track"] * n,
        "name": ["clicked"] * n,
        "timestamp": [NOW] * n,
        "received_at": [NOW] * n,
        "distinct_id": ["u"] * n,
        "person_id": [person] * n,
        "properties": ['{"blob":"' + "x" * 300 + f'{i}"}}' for i in ids],
    }
    return pa.table(
        [pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type) for f in EVENT_SCHEMA],
        schema=EVENT_SCHEMA,
    )  # fmt: skip


def stored(store: DuckDBEventStore) -> list[tuple[str, int]]:
    with store.reading() as cur:
        return cur.execute("SELECT event_id, seq FROM events ORDER BY seq").fetchall()


class Feeder:
    """Unique 200-row groups with rising seqs, as the writer hands them over."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, store: DuckDBEventStore, person: str = "p") -> list[str]:
        ids = [f"e{self.n + i}" for i in range(200)]
        store.append(rows(ids, person, self.n + 1))
        self.n += 200
        return ids

    def until_checkpoint(self, store: DuckDBEventStore) -> None:
        """Appends until the store has started a checkpoint in the background."""
        for _ in range(200):
            if store._checkpoint is not None:
                return
            self(store)
        raise AssertionError("no checkpoint started")


def slow_store(path: Path, sleep_ms: int) -> DuckDBEventStore:
    """A store that checkpoints at 1 MB of WAL, each table's part of a checkpoint stretched
    by DuckDB's debug setting, so a test can act while one runs."""
    store = DuckDBEventStore(path, checkpoint_mb=1)
    store._con.execute(f"SET debug_checkpoint_scan_sleep_ms = {sleep_ms}")
    return store


# -- the file --------------------------------------------------------------------------


def test_the_journal_reads_back_its_entries_and_stops_at_a_damaged_one(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    entries = [
        Entry(1, rows(["a", "b"])),
        Entry(2, rows(["c"]), [("ws", "anon", "p")], [("ws", "person", "p", {"plan": "pro"})]),
        Entry(3, rows(["d"])),
    ]
    for e in entries:
        j.write(e)
    back = j.read()
    assert [(e.id, e.table.equals(w.table), e.merges, e.traits) for e, w in zip(back, entries, strict=True)] == [
        (1, True, [], []),
        (2, True, [("ws", "anon", "p")], [("ws", "person", "p", {"plan": "pro"})]),
        (3, True, [], []),
    ]  # fmt: skip
    data = (tmp_path / "j").read_bytes()
    last = len(encode(entries[2]))
    # a record cut short by a crash (never acknowledged): the ones before it stand
    assert [e.id for e in decode_all(data[:-1])] == [1, 2]
    assert [e.id for e in decode_all(data[: len(data) - last + 10])] == [1, 2]
    # a damaged byte in the second record: reading stops there
    second = len(encode(entries[0]))
    broken = bytearray(data)
    broken[second + 40] ^= 0xFF
    assert [e.id for e in decode_all(bytes(broken))] == [1]
    j.clear()
    assert j.read() == []
    j.write(entries[0])
    assert [e.id for e in j.read()] == [1]
    j.close()


# -- the store -------------------------------------------------------------------------


def test_appends_during_a_checkpoint_do_not_wait_for_it(tmp_path: Path) -> None:
    store = slow_store(tmp_path / "e.duckdb", 500)  # a checkpoint of ~3 s
    feed = Feeder()
    feed.until_checkpoint(store)
    before, head = stored(store), store.max_seq()
    started = time.monotonic()
    held = [feed(store) for _ in range(5)]
    assert time.monotonic() - started < 1.5  # the checkpoint is still running
    assert store._checkpoint is not None
    # acknowledged, on disk in the journal, not readable yet
    assert stored(store) == before and store.max_seq() == head
    assert [e.id for e in Journal(store._journal.path).read()] == [1, 2, 3, 4, 5]
    store.settle()
    after = stored(store)
    assert [i for i, _ in after] == [f"e{k}" for k in range(feed.n)]  # each once, in order
    assert [s for _, s in after] == list(range(1, feed.n + 1))
    assert {i for ids in held for i in ids} <= {i for i, _ in after}
    assert store.max_seq() == feed.n == store._stored_max_seq()
    assert Journal(store._journal.path).read() == []  # emptied once applied
    store.close()


def test_a_duplicate_held_twice_is_stored_once(tmp_path: Path) -> None:
    store = slow_store(tmp_path / "e.duckdb", 200)
    feed = Feeder()
    feed.until_checkpoint(store)
    first = feed(store)
    store.append(rows([first[0], "fresh"], "p", feed.n + 1))  # a client's retry, and one new
    store.settle()
    got = dict(stored(store))
    assert got[first[0]] == feed.n - 199  # the first copy's seq
    assert "fresh" in got and len(got) == feed.n + 1
    store.close()


def test_an_erasure_waits_for_the_held_events_and_deletes_them_too(tmp_path: Path) -> None:
    store = slow_store(tmp_path / "e.duckdb", 300)
    feed = Feeder()
    feed.until_checkpoint(store)
    gone = feed(store, person="erased")
    assert store.delete_people("ws", ["erased"]) == 200  # the held ones, applied first
    assert not set(gone) & {i for i, _ in stored(store)}
    store.close()


def test_an_entry_is_applied_once_whatever_the_crash(tmp_path: Path) -> None:
    """A crash after the first of two held entries was applied: the reopened store applies
    the second only. (Applying the first again would point `a` back at `b`.)"""
    path = tmp_path / "e.duckdb"
    store = DuckDBEventStore(path)
    store._checkpoint = object()  # type: ignore[assignment]  (as if one ran: appends are held)
    store.append(
        rows(["x"], "b", 1), [Merge("ws", "a", "b")], [Traits("ws", "person", "b", {"v": 1})]
    )
    store.append(
        rows(["y"], "c", 2), [Merge("ws", "b", "c")], [Traits("ws", "person", "c", {"v": 2})]
    )
    with store._write_lock:
        store._drain(1)  # the first entry only
    store._con.close()  # the crash: the journal still has both
    assert [e.id for e in Journal(path.with_name("e.duckdb.journal")).read()] == [1, 2]

    again = DuckDBEventStore(path)
    with again.reading() as cur:
        overrides = cur.execute(
            "SELECT old_person_id, person_id FROM person_overrides ORDER BY 1"
        ).fetchall()
        traits = cur.execute("SELECT person_id, traits FROM person_traits ORDER BY 1").fetchall()
        applied = cur.execute("SELECT id FROM journal_applied").fetchall()
    assert overrides == [("a", "c"), ("b", "c")]
    assert traits == [("b", '{"v":1}'), ("c", '{"v":2}')]
    assert applied == [(2,)]
    assert [i for i, _ in stored(again)] == ["x", "y"] and again.max_seq() == 2
    assert Journal(path.with_name("e.duckdb.journal")).read() == []
    # new entries carry on after the applied ones
    again._checkpoint = object()  # type: ignore[assignment]
    again.append(rows(["z"], "c", 3))
    assert [e.id for e in again._held] == [3]
    again._checkpoint = None
    with again._write_lock:
        again._drain(None)
    again.close()


CRASHER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_event_journal import Feeder, slow_store
    from pathlib import Path
    store = slow_store(Path({path!r}), 5000)
    feed = Feeder()
    feed.until_checkpoint(store)
    for _ in range(5):
        feed(store)
    print(feed.n, flush=True)  # acknowledged: all of these
    time.sleep(60)
    """
)


@pytest.mark.slow
def test_kill_9_while_appends_are_held_loses_none(tmp_path: Path) -> None:
    path = tmp_path / "e.duckdb"
    code = CRASHER.format(tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)  # mid-checkpoint, five appends held
    proc.wait()
    assert len(Journal(path.with_name("e.duckdb.journal")).read()) == 5

    store = DuckDBEventStore(path)
    assert [i for i, _ in stored(store)] == [f"e{k}" for k in range(acked)]
    assert store.max_seq() == acked
    store.close()
    store = DuckDBEventStore(path)  # and once only
    assert len(stored(store)) == acked
    store.close()


def test_a_failed_write_leaves_no_damaged_record_before_the_next(tmp_path: Path) -> None:
    """A write cut short (a full disk) is cut off the file: the entry after it is read."""
    j = Journal(tmp_path / "j")
    j.write(Entry(1, rows(["a"])))
    real = j._open()

    class HalfWriter:
        def write(self, data: bytes) -> int:
            real.write(data[: len(data) // 2])
            real.flush()
            raise OSError("no space left on device")

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    j._file = HalfWriter()  # type: ignore[assignment]
    with pytest.raises(OSError, match="no space"):
        j.write(Entry(2, rows(["b"])))
    j._file = real
    j.write(Entry(3, rows(["c"])))
    assert [e.id for e in j.read()] == [1, 3]
    j.close()


def test_a_failed_checkpoint_is_not_retried_at_every_append(tmp_path: Path) -> None:
    """DuckDB refusing a checkpoint: the held appends still reach the file, and the next
    attempt waits a minute rather than starting with the next append."""
    import duckdb

    class Refusing(DuckDBEventStore):
        attempts = 0

        def _checkpoint_file(self) -> None:
            Refusing.attempts += 1
            raise duckdb.IOException("refused")

    store = Refusing(tmp_path / "e.duckdb", checkpoint_mb=1)
    feed = Feeder()
    feed.until_checkpoint(store)
    store.settle()
    for _ in range(30):  # ~6 MB more WAL
        feed(store)
    store.settle()
    assert Refusing.attempts == 1
    assert len(stored(store)) == feed.n
    store.close()
