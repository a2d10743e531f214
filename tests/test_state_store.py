"""The StateStore's bulk load: commits without a sync each, synced once at the end."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from traction.store.state import StateStore


def synchronous(store: StateStore) -> int:
    with store.engine.connect() as c:
        return int(c.exec_driver_sql("PRAGMA synchronous").scalar_one())


def test_a_bulk_load_commits_without_a_sync_each_and_keeps_everything(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(url)
    with store.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    assert synchronous(store) == 2  # FULL: an acknowledged write is on disk
    with store.bulk_load():
        assert synchronous(store) == 1  # NORMAL
        for n in range(50):
            with store.engine.begin() as c:
                c.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    assert synchronous(store) == 2
    with StateStore(url).engine.connect() as c:  # another store on the file sees it all
        assert c.exec_driver_sql("SELECT count(*), sum(n) FROM t").one() == (50, 1225)


def test_a_failed_bulk_load_still_leaves_the_store_durable(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with pytest.raises(RuntimeError), store.bulk_load():
        raise RuntimeError("the load failed")
    assert synchronous(store) == 2
