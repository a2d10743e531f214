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
