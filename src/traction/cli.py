"""The `traction` command. Every sub-command works on the data dir in settings."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from traction.analytics.domain.specs import DateRange
from traction.audit.cli import app as audit_app
from traction.audit.service import ACTOR
from traction.billing.cli import plans_app, subscriptions_app, usage
from traction.catalog.cli import app as catalog_app
from traction.cli_access import Local, Remote, announce, events_access
from traction.cli_common import DataDir, console, err, fail, settings_for
from traction.engage.cli import journeys_app
from traction.experiments.cli import experiments_app
from traction.flags.cli import flags_app
from traction.privacy.cli import app as person_app
from traction.privacy.cli import privacy_app
from traction.segments.cli import segments_app
from traction.settings import Settings
from traction.validation import describe
from traction.workspaces.cli import user_app, workspace_app

if TYPE_CHECKING:
    from traction.context import Context

app = typer.Typer(help="Traction: a self-hosted product-led growth engine.", no_args_is_help=True)


@app.callback()
def _as_cli_user(ctx: typer.Context) -> None:
    """Traction: a self-hosted product-led growth engine."""
    token = ACTOR.set(f"cli:{getpass.getuser()}")  # who the audit log names for local changes
    ctx.call_on_close(lambda: ACTOR.reset(token))


app.add_typer(workspace_app, name="workspace")
app.add_typer(user_app, name="user")
app.add_typer(catalog_app, name="catalog")
app.add_typer(person_app, name="person")
app.add_typer(privacy_app, name="privacy")
app.add_typer(audit_app, name="audit")
app.add_typer(plans_app, name="plans")
app.command("usage")(usage)
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(segments_app, name="segments")
app.add_typer(flags_app, name="flags")
app.add_typer(experiments_app, name="experiments")
app.add_typer(journeys_app, name="journeys")
_settings = settings_for
_fail = fail
Url = Annotated[
    str | None,
    typer.Option(help="A Traction server's URL (default: the one running on --data-dir, if any)."),
]
Key = Annotated[
    str | None,
    typer.Option(
        "--key",
        "--write-key",
        help="With --url: a secret key (tr_sec_…), or a write key to import.",
    ),
]


def _open(settings: Settings, start_writer: bool = False) -> Context:
    from traction.context import Context
    from traction.store.events import EventStoreLocked

    try:
        return Context.open(settings, start_writer=start_writer)
    except EventStoreLocked as e:
        raise _fail(str(e)) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDir = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve HTTP only; run reactors elsewhere.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Plain-text warnings only.")] = False,
) -> None:
    """Run the HTTP API, the dashboard and (unless --no-worker) the reactors."""
    from traction.ops.logging import configure_logging
    from traction.server import create_app
    from traction.store.events import EventStoreLocked

    s = _settings(data_dir)
    # `demo` is for a person at a terminal: its summary, then plain warnings only.
    configure_logging("WARNING" if quiet else s.log_level, json=s.log_json and not quiet)
    try:
        application = create_app(s, run_worker=not no_worker and s.run_worker)
    except EventStoreLocked as e:
        raise _fail(str(e)) from None
    with announce(s, host or s.host, port or s.port):
        _run(application, host or s.host, port or s.port)


def _run(application: Any, host: str, port: int) -> None:
    import uvicorn

    from traction.ops.memory import for_a_server

    ACTOR.set("system")  # requests name their own actor; the rest is the server's doing
    for_a_server()

    uvicorn.run(
        application,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        http="httptools",
        # Client addresses come from `trusted_proxies` (ingest), not from uvicorn's own
        # X-Forwarded-For handling, which trusts any process on 127.0.0.1 by default.
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Create or upgrade the StateStore schema (the server also does this at start)."""
    from traction.store.state import StateStore

    s = _settings(data_dir)
    s.ensure_dirs()
    store = StateStore(s.resolved_state_url)
    store.migrate()
    console.print(
        f"[green]StateStore is at the newest schema[/] ({store.engine.url.render_as_string()})"
    )


@app.command("import")
def import_events(
    file: Annotated[
        Path,
        typer.Argument(
            help="NDJSON, CSV or Parquet file of Segment-shaped events.",
            exists=True,
            dir_okay=False,
        ),
    ],
    workspace: Annotated[
        str | None, typer.Option(help="Workspace id or name (default: the only one).")
    ] = None,
    data_dir: DataDir = None,
    chunk: Annotated[
        int, typer.Option(help="Events per commit (or per HTTP batch, at most 500 KB).")
    ] = 5000,
    url: Url = None,
    key: Key = None,
) -> None:
    """Import historical events through the ingest pipeline (validated, deduped, identities
    resolved): into the data dir, or through the server that holds it (or --url)."""
    from traction.ingest.files import RowError, count_rows, read_rows

    with events_access(data_dir, workspace, url, key) as access:
        send = access.sink()
        total = count_rows(file)
        good = bad = 0
        errors: list[str] = []
        batch: list[tuple[int, object]] = []

        def flush() -> None:
            nonlocal good, bad
            accepted, rejected = send([m for _, m in batch])
            good += accepted
            for index, problem in rejected:
                bad += 1
                errors.append(f"line {batch[index][0]}: {problem}")
            batch.clear()

        with Progress(
            TextColumn("[bold]Importing[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as bar:
            task = bar.add_task("import", total=total)
            try:
                for n, msg in read_rows(file):
                    if isinstance(msg, RowError):
                        bad += 1
                        errors.append(f"line {n}: {msg}")
                    else:
                        batch.append((n, msg))
                        if len(batch) >= chunk:
                            flush()
                    bar.advance(task)
            except ValueError as e:
                raise _fail(str(e)) from None
            if batch:
                flush()
    console.print(f"[green]{good:,} events imported[/]; {bad:,} rejected.")
    for line in errors[:50]:
        err.print(f"  [red]{line}[/]")
    if len(errors) > 50:
        err.print(f"  … and {len(errors) - 50:,} more")
    if bad:
        raise typer.Exit(2)


@app.command()
def report(
    data_dir: DataDir = None,
    workspace: Annotated[
        str | None, typer.Option(help="Workspace id or name (default: the only one).")
    ] = None,
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day (default: 29 days before --to).")
    ] = None,
    date_to: Annotated[
        str | None,
        typer.Option("--to", help="Last day, included (default: the latest event's day)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV for spreadsheets.")] = False,
    url: Url = None,
    key: Key = None,
) -> None:
    """The PLG scorecard: every KPI for the period, the period before, the change, the definition."""
    import csv

    chosen = _report_range(date_from, date_to)
    with events_access(data_dir, workspace, url, key) as access:
        ws = access.workspace_id
        with err.status("Computing the scorecard…"):
            if isinstance(access, Local):
                r = chosen or access.ctx.analytics.default_range(ws)
                rows = access.ctx.analytics.scorecard(ws, r)
            else:
                span = (
                    {"date_from": str(chosen.date_from), "date_to": str(chosen.date_to)}
                    if chosen
                    else {}
                )
                rows = access.get("/api/v1/insights/scorecard", **span)
                r = DateRange(date_from=rows[0]["date_from"], date_to=rows[0]["date_to"])
                for row in rows:
                    del row["date_from"], row["date_to"]
    if as_json:
        print(
            json.dumps(
                {"workspace": ws, "from": str(r.date_from), "to": str(r.date_to), "kpis": rows}
            )
        )
        return
    if as_csv:
        out = csv.writer(sys.stdout)
        out.writerow(["key", "name", "value", "previous", "change", "unit", "definition"])
        for row in rows:
            out.writerow(
                [
                    row[k]
                    for k in ("key", "name", "value", "previous", "change", "unit", "definition")
                ]
            )
        return
    t = Table(
        "KPI",
        "value",
        "previous",
        "change",
        "definition",
        title=f"Scorecard {r.date_from} to {r.date_to}",
    )
    for row in rows:
        colour = {"good": "green", "bad": "red"}.get(row["trend"] or "", "dim")
        change_text = f"[{colour}]{row['formatted_change']}[/]"
        t.add_row(
            row["name"],
            row["formatted"],
            row["formatted_previous"],
            change_text,
            f"[dim]{row['definition']}[/]",
        )
    console.print(t)


def _report_range(date_from: str | None, date_to: str | None) -> DateRange | None:
    """None for the dashboard's default (the 30 days up to the latest event); one end given
    alone makes a 30-day range."""
    from datetime import date, timedelta

    from pydantic import ValidationError

    try:
        if date_from and not date_to:
            start = date.fromisoformat(date_from)
            return DateRange(date_from=start, date_to=start + timedelta(days=29))
        if date_to and not date_from:
            end = date.fromisoformat(date_to)
            return DateRange(date_from=end - timedelta(days=29), date_to=end)
        if date_from and date_to:
            return DateRange(date_from=date_from, date_to=date_to)  # type: ignore[arg-type]
    except (ValidationError, ValueError) as e:
        msg = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
        raise _fail(f"bad dates: {msg} (use YYYY-MM-DD)") from None
    return None


@app.command()
def insight(
    kind: Annotated[
        str,
        typer.Argument(
            help="funnel, trend, retention, activation, sessions, active-users, lifecycle or feature-adoption"
        ),
    ],
    spec: Annotated[
        str, typer.Option("--spec", help="The spec as JSON, or @file.json (docs/analytics.md).")
    ],
    data_dir: DataDir = None,
    workspace: Annotated[
        str | None, typer.Option(help="Workspace id or name (default: the only one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, for scripts.")] = False,
    url: Url = None,
    key: Key = None,
) -> None:
    """Run one insight spec and print the result."""
    from pydantic import ValidationError

    from traction.analytics.api import INSIGHTS
    from traction.analytics.service import QueryTooExpensive

    if kind not in INSIGHTS:
        raise _fail(f"unknown kind {kind!r}: use one of {', '.join(INSIGHTS)}")
    try:
        text = Path(spec[1:]).read_text() if spec.startswith("@") else spec
    except OSError as e:
        raise _fail(f"cannot read the spec file {spec[1:]}: {e.strerror}") from None
    model, method = INSIGHTS[kind]
    try:
        parsed = model.model_validate(json.loads(text))
    except json.JSONDecodeError as e:
        raise _fail(f"the spec is not valid JSON: {e}") from None
    except ValidationError as e:
        problems = describe(e)
        raise _fail(problems) from None
    with events_access(data_dir, workspace, url, key) as access, err.status(f"Running the {kind}…"):
        if isinstance(access, Remote):
            result = access.post(f"/api/v1/insights/{kind}", json.loads(text))
        else:
            try:
                found = getattr(access.ctx.analytics, method)(access.workspace_id, parsed)
            except QueryTooExpensive as e:
                raise _fail(str(e)) from None
            result = json.loads(json.dumps(found.as_dict(), default=str))  # as the API says it
    if as_json:
        print(json.dumps(result, default=str))
        return
    console.print(_result_table(kind, result))


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def _result_table(kind: str, r: dict[str, Any]) -> Table:
    """A readable table for each kind; the JSON has everything."""
    if kind == "funnel":
        t = Table(
            "step",
            "entered",
            "from previous",
            "from start",
            "dropped",
            "median time",
            title="Funnel",
        )
        t.columns[0].overflow = "fold"  # step names whole, wrapped if they must be
        for i, s in enumerate(r["steps"], 1):
            med = s["median_seconds_from_previous"]
            t.add_row(f"{i}. {s['event']}", f"{s['entered']:,}", _pct(s["conversion_from_previous"]),
                      _pct(s["conversion_from_start"]), f"{s['dropped']:,}", "—" if med is None else f"{med / 3600:.1f} h")  # fmt: skip
        return t
    if kind == "retention":
        cohorts = r["cohorts"]
        width = max((len(c["rates"]) for c in cohorts), default=1)
        t = Table(
            "cohort", "size", *[str(k) for k in range(width)], title=f"Retention by {r['interval']}"
        )
        for c in cohorts:
            t.add_row(
                c["start"],
                f"{c['size']:,}",
                *[("" if x is None else f"{x:.0%}") for x in c["rates"]],
            )
        return t
    if kind == "trend":
        lines = r["lines"]
        t = Table(str(r["interval"]), *[line["label"] for line in lines], title="Trend")
        for i, x in enumerate(lines[0]["x"] if lines else []):
            t.add_row(x[:16], *[f"{line['y'][i]:,.4g}" for line in lines])
        return t
    if kind == "activation":
        t = Table(
            "cohort",
            "sign-ups",
            "activated",
            "rate",
            title=f"Activation {_pct(r['rate'])}; TTFV median "
            + (
                "—"
                if r["ttfv_seconds"]["median"] is None
                else f"{r['ttfv_seconds']['median'] / 3600:.1f} h"
            ),
        )
        for c in r["cohorts"]:
            t.add_row(c["start"], f"{c['size']:,}", f"{c['activated']:,}", _pct(c["rate"]))
        return t
    if kind == "sessions":
        t = Table("session", "new actors with it", "mean events", "mean features",
                  title=f"Sessions: {r['sessions']:,} begun, mean {_minutes(r['avg_duration_seconds'])}, "
                  f"{_num(r['avg_events'])} events each; first-session depth {_num(r['depth_events'])}")  # fmt: skip
        for k in r["first_sessions"]:
            t.add_row(
                str(k["session"]),
                f"{k['actors']:,}",
                _num(k["avg_events"]),
                _num(k["avg_features"]),
            )
        return t
    if kind == "active-users":
        t = Table(
            "day", "DAU", "WAU", "MAU", title=f"Active users; stickiness {_num(r['stickiness'], 3)}"
        )
        for d in r["days"]:
            t.add_row(d["day"], f"{d['dau']:,}", f"{d['wau']:,}", f"{d['mau']:,}")
        return t
    if kind == "lifecycle":
        t = Table(r["interval"], "new", "returning", "resurrecting", "dormant", title="Lifecycle")
        for b in r["buckets"]:
            t.add_row(
                b["start"], *(f"{b[k]:,}" for k in ("new", "returning", "resurrecting", "dormant"))
            )
        return t
    t = Table("feature", "used by", "share of active",
              title=f"Feature adoption: {r['active']:,} active, {_pct(r['any_share'])} used any")  # fmt: skip
    t.columns[0].overflow = "fold"
    for f in r["features"]:
        t.add_row(f["event"], f"{f['actors']:,}", _pct(f["share"]))
    return t


def _num(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


@app.command()
def simulate(
    data_dir: DataDir = None,
    workspace: Annotated[
        str | None, typer.Option(help="Workspace id or name (created if missing).")
    ] = None,
    people: Annotated[int, typer.Option(help="Visitors to simulate.")] = 20_000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same events).")] = 7,
    url: Url = None,
    key: Key = None,
) -> None:
    """Simulate a SaaS product's users and send their events through the ingest pipeline
    (or through the server that holds the data dir, or --url). Into a local data dir whose
    workspace has a plan catalog, the purchases are replayed into billing too; through a
    server, only the events go."""
    from traction.simulate.runner import run_simulation, simulate_into
    from traction.simulate.world import SimulationParams

    params = SimulationParams(people=people, days=days, seed=seed)
    with events_access(
        data_dir, workspace or "Demo SaaS", url, key, create_workspace=True
    ) as access:
        ws_id = access.workspace_id
        if isinstance(access, Local):
            stats = run_simulation(access.ctx, ws_id, params, console=err)
        else:
            sink = access.sink()
            stats = simulate_into(lambda m: len(sink(m)[1]), params, console=err).stats
    console.print(
        f"[green]{stats.events:,} events[/] from {stats.visitors:,} visitors ({stats.signups:,} sign-ups) in {ws_id}"
    )


@app.command()
def demo(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    people: Annotated[int, typer.Option(help="Visitors to simulate.")] = 20_000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 120,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Build the demo data and stop.")
    ] = False,
) -> None:
    """Create a demo workspace with realistic simulated data, then serve the dashboard."""
    from traction.cli_access import running_server
    from traction.simulate.ahead import SimulationProcessFailed
    from traction.simulate.demo import DemoInterrupted, prepare_demo

    s = _settings(data_dir)
    running = running_server(s)
    if running:
        raise _fail(
            f"a Traction server already runs on {s.data_dir} at {running}: the demo is there "
            "(stop it to rebuild, or use another --data-dir)"
        )
    ctx = _open(s)
    try:
        info = prepare_demo(ctx, people=people, days=days, console=err)
    except (DemoInterrupted, SimulationProcessFailed) as e:
        raise _fail(str(e)) from None
    finally:
        ctx.close()
    console.rule("[bold]Traction demo")
    console.print(f"Dashboard: [bold]http://{host}:{port}/[/]")
    console.print(f"Log in as [bold]{info.email}[/] with password [bold]{info.password}[/]")
    console.print(f"Write key for sending events: [bold]{info.write_key}[/]")
    console.print(f"{info.events:,} events in workspace {info.workspace_id}")
    if not no_serve:
        console.print("[dim]Serving; press Ctrl+C to stop.[/]")
        serve(host=host, port=port, data_dir=s.data_dir, no_worker=False, quiet=True)


if __name__ == "__main__":
    app()
