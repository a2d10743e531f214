"""Analytics query speed on ~10M simulated events, against hand-written DuckDB SQL.

    .venv/bin/python bench/analytics.py [--people 95000] [--runs 3]
    .venv/bin/python bench/analytics.py --scorecard [--data traction-data]

The second form times the scorecard on the `make demo` data (a copy of it: cold, cold in a
new process that reads the final values an earlier one kept, warm, and after one new event,
against a full recomputation in the same run).


The first run builds the data (the simulator through the real ingest pipeline, ~10 minutes
here) in bench/.data/ and reuses it afterwards. Each query is timed cold (no result cache):
the median of --runs. The baselines are the queries an analyst would write by hand for the
same funnel and retention matrix (first attempt only, no merges of ids beyond overrides).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console  # noqa: E402
from sqlalchemy import delete  # noqa: E402

from traction.analytics.domain.specs import (  # noqa: E402
    ActivationSpec,
    FunnelSpec,
    RetentionSpec,
    TrendSpec,
    day_bounds,
)
from traction.analytics.kept import KeptValues  # noqa: E402
from traction.analytics.models import KeptKPIValue  # noqa: E402
from traction.analytics.service import AnalyticsService  # noqa: E402
from traction.context import Context  # noqa: E402
from traction.settings import Settings  # noqa: E402
from traction.simulate.runner import run_simulation  # noqa: E402
from traction.simulate.world import SimulationParams  # noqa: E402

RANGE = {"date_from": "2026-07-01", "date_to": "2026-10-28"}

BASELINE_FUNNEL = """
WITH e AS (
  SELECT COALESCE(o.person_id, e.person_id) AS p, e.timestamp AS ts, e.name
  FROM events e LEFT JOIN person_overrides o ON o.workspace_id = e.workspace_id AND o.old_person_id = e.person_id
  WHERE e.workspace_id = $ws AND e.name IN ('signed_up', 'project_created', 'teammate_invited')
    AND e.timestamp >= $start AND e.timestamp < $end + INTERVAL 14 DAY),
s1 AS (SELECT p, min(ts) AS t1 FROM e WHERE name = 'signed_up' AND ts < $end GROUP BY p),
s2 AS (SELECT s1.p, s1.t1, min(e.ts) AS t2 FROM s1 JOIN e ON e.p = s1.p AND e.name = 'project_created'
       AND e.ts >= s1.t1 AND e.ts <= s1.t1 + INTERVAL 14 DAY GROUP BY ALL),
s3 AS (SELECT s2.p FROM s2 JOIN e ON e.p = s2.p AND e.name = 'teammate_invited'
       AND e.ts >= s2.t2 AND e.ts <= s2.t1 + INTERVAL 14 DAY GROUP BY ALL)
SELECT (SELECT count(*) FROM s1), (SELECT count(*) FROM s2), (SELECT count(*) FROM s3)
"""

BASELINE_RETENTION = """
WITH e AS (
  SELECT COALESCE(o.person_id, e.person_id) AS p, e.timestamp AS ts, e.name
  FROM events e LEFT JOIN person_overrides o ON o.workspace_id = e.workspace_id AND o.old_person_id = e.person_id
  WHERE e.workspace_id = $ws AND e.name IN ('signed_up', 'session_started')),
f AS (SELECT p, min(ts) AS ft FROM e WHERE name = 'signed_up' GROUP BY p),
c AS (SELECT p, ft, date_trunc('week', ft) AS cw FROM f WHERE ft >= $start AND ft < $end),
r AS (SELECT DISTINCT c.p, c.cw, date_diff('week', c.cw, date_trunc('week', e.ts)) AS k
      FROM c JOIN e ON e.p = c.p AND e.name = 'session_started' AND e.ts > c.ft)
SELECT cw, k, count(*) FROM r WHERE k BETWEEN 1 AND 12 GROUP BY ALL
"""


def timed(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scorecard_bench(data: Path, runs: int, console: Console, slots: int | None) -> None:
    """Cold, warm and after-one-event scorecard on a copy of a data dir (it gains events),
    with the server's analytics slots and DuckDB threads unless told otherwise."""
    from datetime import timedelta

    from demo_copy import demo_copy

    from traction.ingest.domain import normalize_segment

    with demo_copy(data, console) as copy:
        settings = Settings(data_dir=copy, log_json=False)
        lent = 0 if slots else settings.lent_query_slots
        slots = slots or settings.resolved_query_concurrency[0]
        ctx = Context.open(settings, start_writer=False)
        # as in the server: the cores kept for ingestion are lent while no events arrive (the
        # first scorecard at start), not right after one arrived
        idle = [True]

        # final values kept by an earlier process (`analytics.kept`): none in the copy at first
        kept = KeptValues(ctx.state)
        with ctx.state.session() as s:
            s.execute(delete(KeptKPIValue))

        def fresh(keeps: KeptValues | None = None) -> AnalyticsService:
            return AnalyticsService(ctx.events, ctx.workspaces, max_concurrent=slots,
                                    max_concurrent_per_workspace=slots + lent, lent=lent,
                                    ingest_idle=lambda: idle[0], kept=keeps)  # fmt: skip

        try:
            ws = ctx.workspaces.list_workspaces()[0].id
            n = ctx.events.count(ws)
            svc = fresh(kept)
            r = svc.default_range(ws)
            t0 = time.perf_counter()
            first = svc.scorecard(ws, r)
            cold = time.perf_counter() - t0
            warm = timed(lambda: svc.scorecard(ws, r), runs)
            latest = svc._latest_event(ws)
            assert latest is not None
            user = _a_user(ctx, ws)
            idle[0] = False
            after_exact, after_page = [], []
            by_kind: dict[str, list[float]] = {}
            for i in range(runs):
                for kind, msgs in _new_events(user, i, latest + timedelta(minutes=10 * i + 1)):
                    ctx.ingest.ingest_sync(ws, msgs, normalize_segment)
                    t0 = time.perf_counter()
                    svc.scorecard(ws, r, wait=False)  # the dashboard: stale values marked updating
                    after_page.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    svc.scorecard(ws, r)  # the API and CLI: exact values
                    after_exact.append(time.perf_counter() - t0)
                    by_kind.setdefault(kind, []).append(after_exact[-1])
            idle[0] = True
            full = timed(lambda: fresh().scorecard(ws, r), 1)
            restarted = timed(lambda: fresh(kept).scorecard(ws, r), 1)
            finals = len(kept.load(ws))
            same = [row["value"] for row in svc.scorecard(ws, r)] == [
                row["value"] for row in fresh().scorecard(ws, r)
            ]
        finally:
            ctx.close()
    del first
    page, exact = statistics.median(after_page), statistics.median(after_exact)
    print(f"scorecard on {n:,} events, range {r.date_from} to {r.date_to} (and the 30 days before)")
    print(f"{slots} analytics quer{'y' if slots == 1 else 'ies'} at once"
          f"{f' (+{lent} lent while no events arrive: cold, warm, full)' if lent else ''}, "
          f"{settings.resolved_query_threads} DuckDB thread(s) each\n")  # fmt: skip
    print(f"{'':<46}{'seconds':>10}{'vs full':>9}")
    print(f"{'full recomputation (no cache: the baseline)':<46}{full:>10.3f}{1:>9.2f}")
    print(f"{'cold (first request)':<46}{cold:>10.3f}{cold / full:>9.2f}")
    print(
        f"{f'cold, {finals} final values kept (a restart)':<46}{restarted:>10.3f}{restarted / full:>9.2f}"
    )
    print(f"{'warm (no new events)':<46}{warm:>10.4f}{warm / full:>9.4f}")
    print(f"{'after one new event: page answers (stale+bg)':<46}{page:>10.4f}{page / full:>9.4f}")
    print(f"{'after one new event: exact (API, CLI)':<46}{exact:>10.3f}{exact / full:>9.2f}")
    print(f"\ncached figures equal a full recomputation: {same}")
    print("\nexact after one new event, by kind (median of --runs, seconds):")
    for kind, times in by_kind.items():
        print(f"  {kind:<44}{statistics.median(times):>10.3f}")


def _a_user(ctx: Context, ws: str) -> str:
    """A user id of the data: the person with the most events."""
    with ctx.events.reading() as cur:
        row = cur.execute(
            "SELECT user_id FROM events WHERE workspace_id = ? AND user_id IS NOT NULL "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            [ws],
        ).fetchone()
    return str(row[0]) if row else "bench-user"


def _new_events(user: str, i: int, at: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    """The kinds of one new event a live product sends: a known user's, a new visitor's page
    view, and a visitor signing up (their anonymous person merged into the user's)."""

    def msg(**m: Any) -> dict[str, Any]:
        return {"timestamp": at.isoformat() + "Z", "messageId": f"bench-{time.time_ns()}", **m}

    visitor = f"bench-visitor-{i}-{time.time_ns()}"
    return [
        ("a known user's event (dashboard_viewed)",
         [msg(type="track", userId=user, event="dashboard_viewed")]),
        ("a new visitor's page view", [msg(type="page", anonymousId=visitor, name="pricing")]),
        ("that visitor signs up (identify: a merge)",
         [msg(type="identify", anonymousId=visitor, userId=f"{visitor}-user"),
          msg(type="track", anonymousId=visitor, userId=f"{visitor}-user", event="signed_up")]),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--people", type=int, default=95_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--scorecard", action="store_true", help="time the scorecard on --data")
    ap.add_argument("--slots", type=int, default=None,
                    help="analytics queries at once (default: the server's, half the cores)")  # fmt: skip
    args = ap.parse_args()
    console = Console(stderr=True)
    if args.scorecard:
        scorecard_bench(args.data or ROOT / "traction-data", args.runs, console, args.slots)
        return
    args.data = args.data or ROOT / "bench" / ".data" / "analytics"
    ctx = Context.open(Settings(data_dir=args.data, log_json=False), start_writer=False)
    try:
        ws_row = ctx.workspaces.find_workspace("bench")
        ws = ws_row.id if ws_row else ctx.workspaces.create_workspace("bench").id
        if ctx.events.count(ws) == 0:
            console.print(f"Building the data: {args.people:,} visitors over 120 days (once) ...")
            run_simulation(
                ctx, ws, SimulationParams(people=args.people, days=120, seed=11), console=console
            )
        n = ctx.events.count(ws)
        fresh = lambda: AnalyticsService(ctx.events, ctx.workspaces)  # noqa: E731  (no result cache)
        funnel = FunnelSpec.model_validate(
            {
                "steps": [
                    {"event": "signed_up"},
                    {"event": "project_created"},
                    {"event": "teammate_invited"},
                ],
                "range": RANGE,
                "window_days": 14,
            }
        )
        retention = RetentionSpec.model_validate(
            {
                "start_event": {"event": "signed_up"},
                "return_event": {"event": "session_started"},
                "range": RANGE,
                "interval": "week",
                "periods": 12,
            }
        )
        trend = TrendSpec.model_validate(
            {
                "series": [{"event": {"event": "feature_used"}, "math": "unique_persons"}],
                "range": RANGE,
                "breakdown": "feature",
            }
        )
        activation = ActivationSpec.model_validate(
            {
                "start_event": {"event": "signed_up"},
                "criteria": {
                    "all": [
                        {"event": {"event": "project_created"}},
                        {"event": {"event": "teammate_invited"}},
                    ]
                },
                "range": RANGE,
            }
        )
        start, end = day_bounds(funnel.range, "UTC")
        params = {"ws": ws, "start": start, "end": end}

        def base(sql: str) -> Callable[[], Any]:
            return lambda: ctx.events._con.cursor().execute(sql, params).fetchall()

        ours_f = fresh().funnel(ws, funnel)
        base_f = base(BASELINE_FUNNEL)()
        rows = [
            (
                "funnel, 3 steps, 14-day window",
                timed(lambda: fresh().funnel(ws, funnel), args.runs),
                timed(base(BASELINE_FUNNEL), args.runs),
            ),
            (
                "retention matrix, weekly, 12 periods",
                timed(lambda: fresh().retention(ws, retention), args.runs),
                timed(base(BASELINE_RETENTION), args.runs),
            ),
            (
                "trend: daily unique persons by feature",
                timed(lambda: fresh().trend(ws, trend), args.runs),
                None,
            ),
            (
                "activation + TTFV",
                timed(lambda: fresh().activation(ws, activation), args.runs),
                None,
            ),
        ]
        svc = fresh()
        svc.funnel(ws, funnel)
        cached = timed(lambda: svc.funnel(ws, funnel), args.runs)
    finally:
        ctx.close()
    print(f"{n:,} events, {args.runs} runs each (median), cold\n")
    print(f"{'query':<42}{'traction':>10}{'baseline':>10}{'ratio':>8}")
    for name, ours, baseline in rows:
        b = f"{baseline:.3f}s" if baseline else "—"
        r = f"{ours / baseline:.2f}" if baseline else "—"
        print(f"{name:<42}{ours:>9.3f}s{b:>10}{r:>8}")
    print(f"{'funnel again, cached (same data version)':<42}{cached:>9.4f}s")
    print(
        f"\nfunnel counts: traction {[s.entered for s in ours_f.steps]}, baseline (first attempt only) {list(base_f[0])}"
    )


if __name__ == "__main__":
    main()
