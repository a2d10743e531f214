"""The scorecard's final values, kept in the StateStore for the next process.

A value over a closed period is *final* once the data had reached past everything it reads
(`analytics.scorecard`): a later event changes it only if it lands in that past, or if people
were merged or erased, and the scorecard checks both whenever it reads the value. So a value
computed by one process still holds in the next: a restarted server, or `traction report`
without a server, computes only the open period (half of a scorecard's work).

A kept value is named by a hash of what it is of, including the code of the definitions
(every module of `traction.analytics` and `traction.billing.domain`): a value computed by
other code is never read.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from sqlalchemy import delete, select

from traction.analytics.models import KeptKPIValue
from traction.analytics.scorecard import Entry, Key
from traction.store.state import StateStore, insert_for, utcnow


@cache
def definitions() -> str:
    """A hash of the code that defines the KPIs' values."""
    import traction.analytics
    import traction.billing.domain

    h = hashlib.sha256()
    for package in (traction.analytics, traction.billing.domain):
        root = Path(package.__file__ or "").parent
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def stored_key(key: Key) -> str:
    _ws, kpi, r, config, tz = key
    what = [definitions(), kpi, str(r.date_from), str(r.date_to), config.model_dump_json(), tz]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()


class KeptValues:
    MAX_PER_WORKSPACE = 5000  # the oldest go first: a dashboard reads recent periods

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def key(self, key: Key) -> str:
        return stored_key(key)

    def load(self, workspace_id: str) -> dict[str, Entry]:
        with self.state.session() as s:
            rows = s.scalars(
                select(KeptKPIValue).where(KeptKPIValue.workspace_id == workspace_id)
            ).all()
            return {
                r.key: Entry(r.value, r.seq, (r.merges, r.deletions), r.reads_until, True)
                for r in rows
            }

    def save(self, workspace_id: str, entries: dict[str, Entry]) -> None:
        """Final entries only: any other may change without the data moving past it."""
        now = utcnow()
        assert all(e.final for e in entries.values()), "only final values are kept"
        rows = [
            {"workspace_id": workspace_id, "key": key, "value": e.value, "seq": e.seq,
             "merges": e.changes[0], "deletions": e.changes[1],
             "reads_until": e.reads_until, "computed_at": now}
            for key, e in sorted(entries.items())  # (one order: no deadlock on PostgreSQL)
        ]  # fmt: skip
        if not rows:
            return
        with self.state.session() as s:
            # an upsert: two computations of one value (the dashboard's refresh and a
            # sparkline's) may save it at once
            ins = insert_for(s, KeptKPIValue.__table__)
            updated = {c: ins.excluded[c] for c in rows[0] if c not in ("workspace_id", "key")}
            s.execute(
                ins.values(rows).on_conflict_do_update(
                    index_elements=["workspace_id", "key"], set_=updated
                )
            )
            oldest = (
                select(KeptKPIValue.key)
                .where(KeptKPIValue.workspace_id == workspace_id)
                .order_by(KeptKPIValue.computed_at.desc())
                .offset(self.MAX_PER_WORKSPACE)
            )
            stale = list(s.scalars(oldest))
            if stale:
                s.execute(
                    delete(KeptKPIValue).where(
                        KeptKPIValue.workspace_id == workspace_id, KeptKPIValue.key.in_(stale)
                    )
                )
