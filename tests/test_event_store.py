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
