"""Insights as pandas DataFrames, for notebooks.

    from traction.analytics.notebook import Traction

    tr = Traction.remote("http://127.0.0.1:8000", secret_key="tr_sec_…")   # a running server
    tr = Traction.local("./traction-data", workspace="Demo SaaS")           # no server running
    tr.funnel({"steps": [{"event": "signed_up"}, {"event": "project_created"}],
               "range": {"date_from": "2026-07-01", "date_to": "2026-07-31"}})

Both talk the same specs as the HTTP API and give the same frames: the conversion from a
result to a frame lives in one place below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import pandas as pd

    from traction.context import Context


def _pd() -> Any:
    try:
        import pandas
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("DataFrames need pandas: pip install 'traction[notebook]'") from None
    return pandas


def funnel_frame(result: dict[str, Any]) -> pd.DataFrame:
    return _pd().DataFrame(result["steps"]).set_index("event")


def trend_frame(result: dict[str, Any]) -> pd.DataFrame:
    """One column per line (series or breakdown value), one row per bucket."""
    pd = _pd()
    cols = {
        line["label"]: pd.Series(line["y"], index=pd.to_datetime(line["x"]))
        for line in result["lines"]
    }
    frame = pd.DataFrame(cols)
    frame.index.name = result["interval"]
    return frame


def retention_frame(result: dict[str, Any], rates: bool = True) -> pd.DataFrame:
    """Cohorts by period; retention rates (or retained counts), NaN where not observable yet."""
    pd = _pd()
    rows = {
        c["start"]: [c["size"], *(c["rates"] if rates else c["retained"])]
        for c in result["cohorts"]
    }
    width = max((len(v) for v in rows.values()), default=1) - 1
    frame = pd.DataFrame.from_dict(
        rows, orient="index", columns=["size", *range(width)], dtype="float64"
    )
    frame.index.name = "cohort"
    return frame


def cohorts_frame(result: dict[str, Any]) -> pd.DataFrame:
    frame = _pd().DataFrame(result["cohorts"]).set_index("start")
    frame.attrs.update({k: v for k, v in result.items() if k != "cohorts"})
    return frame


def scorecard_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return _pd().DataFrame(rows).set_index("key")


class Traction:
    def __init__(self, run: Any, scorecard: Any) -> None:
        self._run = run
        self._scorecard = scorecard

    @classmethod
    def remote(cls, url: str, secret_key: str, timeout: float = 120.0) -> Traction:
        client = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {secret_key}"},
            timeout=timeout,
        )

        def check(r: httpx.Response) -> Any:
            if r.status_code >= 400:
                raise ValueError(f"HTTP {r.status_code}: {r.json().get('error', r.text)}")
            return r.json()

        def run(path: str, spec: dict[str, Any]) -> dict[str, Any]:
            return check(client.post(f"/api/v1/insights/{path}", json=spec))  # type: ignore[no-any-return]

        def scorecard(date_from: str, date_to: str) -> list[dict[str, Any]]:
            return check(
                client.get(
                    "/api/v1/insights/scorecard",
                    params={"date_from": date_from, "date_to": date_to},
                )
            )  # type: ignore[no-any-return]

        return cls(run, scorecard)

    @classmethod
    def local(cls, data_dir: str, workspace: str | None = None) -> Traction:
        from traction.analytics.api import INSIGHTS
        from traction.analytics.domain.specs import DateRange
        from traction.context import Context
        from traction.settings import Settings

        ctx: Context = Context.open(
            Settings(data_dir=data_dir).without_a_server(), start_writer=False
        )
        spaces = ctx.workspaces.list_workspaces()
        match = [w for w in spaces if workspace in (None, w.id, w.name)]
        if len(match) != 1:
            ctx.close()
            raise ValueError(f"name one workspace of: {', '.join(w.name for w in spaces)}")
        ws = match[0].id

        def run(path: str, spec: dict[str, Any]) -> dict[str, Any]:
            model, method = INSIGHTS[path]
            return getattr(ctx.analytics, method)(ws, model.model_validate(spec)).as_dict()  # type: ignore[no-any-return]

        def scorecard(date_from: str, date_to: str) -> list[dict[str, Any]]:
            return ctx.analytics.scorecard(ws, DateRange(date_from=date_from, date_to=date_to))  # type: ignore[arg-type]

        return cls(run, scorecard)

    def funnel(self, spec: dict[str, Any]) -> pd.DataFrame:
        return funnel_frame(self._run("funnel", spec))

    def trend(self, spec: dict[str, Any]) -> pd.DataFrame:
        return trend_frame(self._run("trend", spec))

    def retention(self, spec: dict[str, Any], rates: bool = True) -> pd.DataFrame:
        return retention_frame(self._run("retention", spec), rates)

    def activation(self, spec: dict[str, Any]) -> pd.DataFrame:
        return cohorts_frame(self._run("activation", spec))

    def scorecard(self, date_from: str, date_to: str) -> pd.DataFrame:
        return scorecard_frame(self._scorecard(date_from, date_to))

    def raw(self, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Any insight (e.g. "lifecycle", "active-users") as the API's JSON."""
        return self._run(kind, spec)  # type: ignore[no-any-return]
