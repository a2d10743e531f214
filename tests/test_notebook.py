"""The notebook API gives the same DataFrames locally and through a running server."""

from __future__ import annotations

import math
from pathlib import Path

from tests.conftest import LiveServer
from tests.test_kpis import msgs
from traction.analytics.notebook import Traction
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.settings import Settings

R = {"date_from": "2026-03-01", "date_to": "2026-03-31"}
FUNNEL = {
    "steps": [{"event": "signed_up"}, {"event": "trial_started"}],
    "range": R,
    "window_days": 1,
}
RETENTION = {"start_event": {"event": "signed_up"}, "range": R, "interval": "day", "periods": 8}
TREND = {
    "series": [{"event": {"event": "signed_up"}}],
    "range": {"date_from": "2026-03-01", "date_to": "2026-03-10"},
}


def test_local_and_remote_frames_agree(tmp_path: Path, server: LiveServer) -> None:
    ctx = Context.open(Settings(data_dir=tmp_path), start_writer=False)
    ws = ctx.workspaces.create_workspace("Nb").id
    ctx.ingest.ingest_sync(ws, msgs(), normalize_segment)
    ctx.close()
    remote_ws = server.ctx.workspaces.create_workspace("Nb")
    server.ctx.ingest.ingest_sync(remote_ws.id, msgs(), normalize_segment)

    local = Traction.local(str(tmp_path), workspace="Nb")
    remote = Traction.remote(server.url, remote_ws.secret_key)
    for tr in (local, remote):
        f = tr.funnel(FUNNEL)
        assert list(f.index) == ["signed_up", "trial_started"] and list(f["entered"]) == [3, 2]
        t = tr.trend(TREND)
        assert t["signed_up"].sum() == 3 and len(t) == 10 and t.index[0].day == 1
        r = tr.retention(RETENTION)
        assert list(r.columns[:2]) == ["size", 0] and r.loc["2026-03-02", "size"] == 1.0
        assert r.loc["2026-03-02", 8] == 1.0 and math.isnan(
            r.loc["2026-03-08", 8]
        )  # u1 back on Mar 10; not observable yet
        s = tr.scorecard("2026-03-01", "2026-03-31")
        assert s.loc["sharing_rate", "value"] == 0.5
    frames = [tr.funnel(FUNNEL) for tr in (local, remote)]
    assert frames[0].equals(frames[1])
    try:
        remote.funnel({**FUNNEL, "window_days": -1})
    except ValueError as e:
        assert "HTTP 422" in str(e) and "window_days" in str(e)
    else:
        raise AssertionError("expected a 422")
