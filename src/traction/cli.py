"""The `traction` command. Every sub-command works on the data dir in settings."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from traction.catalog.cli import app as catalog_app
from traction.cli_common import DataDir, console, err, fail, pick_workspace, settings_for
from traction.settings import Settings
from traction.validation import describe

if TYPE_CHECKING:
    from traction.analytics.domain.specs import DateRange
    from traction.context import Context

app = typer.Typer(help="Traction: a self-hosted product-led growth engine.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspaces and their keys.", no_args_is_help=True)
user_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
app.add_typer(user_app, name="user")
app.add_typer(catalog_app, name="catalog")
_settings = settings_for
_fail = fail


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
    import uvicorn

    from traction.ops.logging import configure_logging
    from traction.server import create_app

    s = _settings(data_dir)
    # `demo` is for a person at a terminal: its summary, then plain warnings only.
    configure_logging("WARNING" if quiet else s.log_level, json=s.log_json and not quiet)
    application = create_app(s, run_worker=not no_worker and s.run_worker)
    uvicorn.run(
        application,
        host=host or s.host,
        port=port or s.port,
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


@workspace_app.command("create")
def workspace_create(
    name: str,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    owner: Annotated[
        str | None, typer.Option(help="Email of an existing dashboard user to add.")
    ] = None,
    timezone: Annotated[
        str, typer.Option(help="IANA time zone for day/week/month boundaries.")
    ] = "UTC",
) -> None:
    """Create a workspace; prints its id, public write key and secret (admin) key."""
    ctx = _open(_settings(data_dir))
    try:
        try:
            created = ctx.workspaces.create_workspace(name, timezone)
            if owner:
                ctx.workspaces.add_member(owner, created.id)
        except ValueError as e:
            raise _fail(str(e)) from None
    finally:
        ctx.close()
    if as_json:
        print(
            json.dumps(
                {
                    "id": created.id,
                    "name": created.name,
                    "write_key": created.write_key,
                    "secret_key": created.secret_key,
                }
            )
        )
        return
    t = Table(show_header=False)
    t.add_row("workspace id", created.id)
    t.add_row("write key (public: ingest only)", created.write_key)
    t.add_row("secret key (admin: keep it secret)", created.secret_key)
    console.print(t)
    console.print("[dim]Keys are stored hashed; they are not shown again.[/]")


@workspace_app.command("configure")
def workspace_configure(
    workspace: Annotated[
        str | None, typer.Option(help="Workspace id or name (default: the only one).")
    ] = None,
    data_dir: DataDir = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone for day/week/month boundaries.")
    ] = None,
    kpi_config: Annotated[
        str | None,
        typer.Option("--kpi-config", help="KPI event configuration as JSON or @file.json."),
    ] = None,
) -> None:
    """Set a workspace's time zone and which events its KPIs read; prints the result."""
    from pydantic import ValidationError

    ctx = _open(_settings(data_dir))
    try:
        ws = _pick_workspace(ctx, workspace)
        try:
            if timezone:
                ctx.workspaces.update_workspace(ws, timezone=timezone)
            if kpi_config:
                text = (
                    Path(kpi_config[1:]).read_text() if kpi_config.startswith("@") else kpi_config
                )
                ctx.saved.set_kpi_config(ws, json.loads(text))
        except ValidationError as e:
            raise _fail(describe(e)) from None
        except (ValueError, json.JSONDecodeError) as e:
            raise _fail(str(e)) from None
        current = ctx.workspaces.get_workspace(ws)
        config = ctx.saved.kpi_config(ws)
    finally:
        ctx.close()
    assert current is not None
    console.print(f"[bold]{current.name}[/] ({current.id}), time zone [bold]{current.timezone}[/]")
    console.print_json(data=config.model_dump(mode="json"))


@workspace_app.command("list")
def workspace_list(data_dir: DataDir = None) -> None:
    """List workspaces."""
    ctx = _open(_settings(data_dir))
    try:
        t = Table("id", "name", "time zone")
        for w in ctx.workspaces.list_workspaces():
            t.add_row(w.id, w.name, w.timezone)
        console.print(t)
    finally:
        ctx.close()


@user_app.command("create")
def user_create(
    email: str,
    data_dir: DataDir = None,
    workspace: Annotated[
        list[str] | None, typer.Option(help="Workspace id to join (repeatable).")
    ] = None,
    password: Annotated[str | None, typer.Option(help="Password (prompted if omitted).")] = None,
) -> None:
    """Create a dashboard user (the password is stored as an argon2 hash)."""
    if password is None:
        if not sys.stdin.isatty():
            raise _fail("give --password, or run in a terminal to be prompted")
        password = getpass.getpass("Password: ")
    ctx = _open(_settings(data_dir))
    try:
        ids = workspace or [w.id for w in ctx.workspaces.list_workspaces()]
        try:
            ctx.workspaces.create_user(email, password, ids)
        except ValueError as e:
            raise _fail(str(e)) from None
    finally:
        ctx.close()
    console.print(f"[green]User {email} created[/] with access to {len(ids)} workspace(s).")


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
    url: Annotated[
        str | None, typer.Option(help="Send through a running server's tracking API instead.")
    ] = None,
    write_key: Annotated[
        str | None, typer.Option(help="The workspace's write key, with --url.")
    ] = None,
) -> None:
    """Import historical events through the ingest pipeline (validated, deduped, identities
    resolved): directly into the data dir, or with --url through a running server."""
    from traction.ingest.files import RowError, count_rows, read_rows

    if url and not write_key:
        raise _fail("--url needs --write-key (the workspace's tr_pub_… key)")
    ctx = None if url else _open(_settings(data_dir))
    try:
        if ctx is None:
            send = _http_sink(url or "", write_key or "")
        else:
            send = _local_sink(ctx, _pick_workspace(ctx, workspace))
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
    finally:
        if ctx is not None:
            ctx.close()
    console.print(f"[green]{good:,} events imported[/]; {bad:,} rejected.")
    for line in errors[:50]:
        err.print(f"  [red]{line}[/]")
    if len(errors) > 50:
        err.print(f"  … and {len(errors) - 50:,} more")
    if bad:
        raise typer.Exit(2)


Sink = Callable[[list[object]], tuple[int, list[tuple[int, str]]]]


def _local_sink(ctx: Context, ws: str) -> Sink:
    from traction.ingest.domain import normalize_segment

    def send(messages: list[object]) -> tuple[int, list[tuple[int, str]]]:
        result = ctx.ingest.ingest_sync(ws, messages, normalize_segment)
        return result.accepted, [(r["index"], r["error"]) for r in result.rejected]

    return send


def _http_sink(url: str, write_key: str) -> Sink:
    """POST /v1/batch in bodies under 500 KB; per-event rejections come back by index."""
    import time

    import httpx
    import orjson

    client = httpx.Client(base_url=url.rstrip("/"), auth=(write_key, ""), timeout=60)
    limit = 480 * 1024

    def post(messages: list[object], offset: int) -> tuple[int, list[tuple[int, str]]]:
        body = orjson.dumps({"batch": messages})
        if len(body) > limit and len(messages) > 1:
            half = len(messages) // 2
            a, ra = post(messages[:half], offset)
            b, rb = post(messages[half:], offset + half)
            return a + b, ra + rb
        for attempt in range(5):
            try:
                r = client.post(
                    "/v1/batch", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as e:
                problem = f"cannot reach {url}: {e}"
            else:
                if r.status_code == 200:
                    return len(messages), []
                if r.status_code == 400 and "rejected" in r.json():
                    out = r.json()
                    return out["accepted"], [
                        (offset + x["index"], x["error"]) for x in out["rejected"]
                    ]
                if r.status_code < 500 and r.status_code != 429:
                    raise _fail(
                        f"the server refused the batch: HTTP {r.status_code}: {r.json().get('error', r.text)}"
                    )
                problem = f"HTTP {r.status_code}"
            time.sleep(min(10.0, 0.5 * 2**attempt))
        raise _fail(f"giving up after 5 tries: {problem}")

    return lambda messages: post(messages, 0)


def _pick_workspace(ctx: Context, ref: str | None) -> str:
    return pick_workspace(ctx.workspaces.list_workspaces(), ref)


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
) -> None:
    """The PLG scorecard: every KPI for the period, the period before, the change, the definition."""
    import csv

    ctx = _open(_settings(data_dir))
    try:
        ws = _pick_workspace(ctx, workspace)
        r = _report_range(ctx.analytics.default_range(ws), date_from, date_to)
        with err.status(f"Computing the scorecard for {r.date_from} to {r.date_to}…"):
            rows = ctx.analytics.scorecard(ws, r)
    finally:
        ctx.close()
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


def _report_range(default: DateRange, date_from: str | None, date_to: str | None) -> DateRange:
    """The dashboard's default (the 30 days up to the latest event) unless told otherwise;
    one end given alone makes a 30-day range."""
    from datetime import date, timedelta

    from pydantic import ValidationError

    from traction.analytics.domain.specs import DateRange

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
    return default


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
) -> None:
    """Run one insight spec and print the result."""
    from pydantic import ValidationError

    from traction.analytics.api import INSIGHTS
    from traction.analytics.service import QueryTooExpensive

    if kind not in INSIGHTS:
        raise _fail(f"unknown kind {kind!r}: use one of {', '.join(INSIGHTS)}")
    text = Path(spec[1:]).read_text() if spec.startswith("@") else spec
    model, method = INSIGHTS[kind]
    try:
        parsed = model.model_validate(json.loads(text))
    except json.JSONDecodeError as e:
        raise _fail(f"the spec is not valid JSON: {e}") from None
    except ValidationError as e:
        problems = describe(e)
        raise _fail(problems) from None
    ctx = _open(_settings(data_dir))
    try:
        ws = _pick_workspace(ctx, workspace)
        try:
            result = getattr(ctx.analytics, method)(ws, parsed).as_dict()
        except QueryTooExpensive as e:
            raise _fail(str(e)) from None
    finally:
        ctx.close()
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
    t = Table("field", "value", title=kind)
    for k, v in r.items():
        t.add_row(k, json.dumps(v, default=str)[:200])
    return t


@app.command()
def simulate(
    data_dir: DataDir = None,
    workspace: Annotated[
        str | None, typer.Option(help="Workspace id or name (created if missing).")
    ] = None,
    people: Annotated[int, typer.Option(help="Visitors to simulate.")] = 20_000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same events).")] = 7,
) -> None:
    """Simulate a SaaS product's users and send their events through the ingest pipeline."""
    from traction.simulate.runner import run_simulation
    from traction.simulate.world import SimulationParams

    ctx = _open(_settings(data_dir))
    try:
        name = workspace or "Demo SaaS"
        ws = ctx.workspaces.find_workspace(name)
        ws_id = ws.id if ws else ctx.workspaces.create_workspace(name).id
        stats = run_simulation(
            ctx, ws_id, SimulationParams(people=people, days=days, seed=seed), console=err
        )
    finally:
        ctx.close()
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
    from traction.simulate.demo import prepare_demo

    s = _settings(data_dir)
    ctx = _open(s)
    try:
        info = prepare_demo(ctx, people=people, days=days, console=err)
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
