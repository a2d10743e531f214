"""The EventStore's own schema versioning (the StateStore uses Alembic)."""

from __future__ import annotations

from pathlib import Path

from traction.store.events import _MIGRATIONS, DuckDBEventStore


def test_new_file_is_at_the_newest_version_and_reopening_is_idempotent(tmp_path: Path) -> None:
    store = DuckDBEventStore(tmp_path / "e.duckdb")
    assert store.schema_version == _MIGRATIONS[-1][0]
    store.close()
    again = DuckDBEventStore(tmp_path / "e.duckdb")
    assert again._con.cursor().execute("SELECT count(*) FROM schema_version").fetchone() == (
        len(_MIGRATIONS),
    )
    again.close()


def test_a_file_from_before_versioning_is_adopted_with_its_data(tmp_path: Path) -> None:
    store = DuckDBEventStore(tmp_path / "old.duckdb")
    store._con.cursor().execute("INSERT INTO person_overrides VALUES ('ws', 'a', 'b')")
    store._con.cursor().execute("DROP TABLE schema_version")  # as a file written before versioning
    store.close()
    adopted = DuckDBEventStore(tmp_path / "old.duckdb")
    assert adopted.schema_version == _MIGRATIONS[-1][0]
    assert adopted._con.cursor().execute("SELECT person_id FROM person_overrides").fetchall() == [
        ("b",)
    ]
    adopted.close()


def test_traits_mirror_keeps_the_last_of_a_commit_and_replaces_older(tmp_path: Path) -> None:
    """Traits are written in one statement per commit: within a commit the last traits of a
    person win (as one statement a row did), and a later commit replaces them."""
    import pyarrow as pa

    from traction.store.events import EVENT_SCHEMA, Traits

    store = DuckDBEventStore(tmp_path / "e.duckdb")
    empty = pa.table({f.name: pa.array([], f.type) for f in EVENT_SCHEMA}, schema=EVENT_SCHEMA)
    store.append(empty, traits=[Traits("ws", "person", "p1", {"plan": "free"}),
                                Traits("ws", "account", "a1", {"seats": 3}),
                                Traits("ws", "person", "p2", {"plan": "pro"}),
                                Traits("ws", "person", "p1", {"plan": "team"})])  # fmt: skip
    store.append(empty, traits=[Traits("ws", "person", "p2", {"plan": "free", "x": 1})])
    with store.reading() as cur:
        people = dict(
            cur.execute("SELECT person_id, traits::VARCHAR FROM person_traits").fetchall()
        )
        accounts = cur.execute("SELECT account_id, traits::VARCHAR FROM account_traits").fetchall()
    assert people == {"p1": '{"plan":"team"}', "p2": '{"plan":"free","x":1}'}
    assert accounts == [("a1", '{"seats":3}')]
    store.close()


def _wal_after(tmp_path: Path, name: str, checkpoint_mb: int | None) -> int:
    """The WAL's size after appending ~3 MB of events in 100-row commits."""
    import pyarrow as pa

    from traction.store.events import EVENT_SCHEMA

    store = DuckDBEventStore(tmp_path / name, checkpoint_mb=checkpoint_mb)
    n = 100
    for k in range(60):
        cols = {
            "workspace_id": ["ws"] * n,
            "event_id": [f"e{k}-{i}" for i in range(n)],
            "seq": [k * n + i for i in range(n)],
            "type": ["track"] * n,
            "timestamp": pa.array([0] * n, pa.timestamp("us")),
            "received_at": pa.array([0] * n, pa.timestamp("us")),
            "distinct_id": ["u"] * n,
            "person_id": ["p"] * n,
            "properties": ['{"blob":"' + "x" * 400 + f'{k}-{i}"}}' for i in range(n)],
        }
        store.append(
            pa.table(
                [
                    pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type)
                    for f in EVENT_SCHEMA
                ],
                schema=EVENT_SCHEMA,
            )
        )
    store.settle()  # (a checkpoint in the background, and what it held, are done)
    wal = tmp_path / (name + ".wal")
    size = wal.stat().st_size if wal.exists() else 0
    with store.reading() as cur:
        assert cur.execute("SELECT count(*) FROM events").fetchone() == (60 * n,)
    store._con.close()  # (not `close`, which checkpoints)
    return size


def test_the_wal_is_moved_into_the_file_past_event_checkpoint_mb(tmp_path: Path) -> None:
    """`event_checkpoint_mb` is where the store checkpoints: a 1 MB one moves the ~3 MB
    written into the file along the way, a 64 MB one leaves it all in the WAL."""
    small = _wal_after(tmp_path, "small.duckdb", 1)
    large = _wal_after(tmp_path, "large.duckdb", 64)
    assert large > 2_000_000
    assert small < 1_500_000
