"""`traction plans apply|show`, `traction usage ACCOUNT`, `traction subscriptions start`.
The catalog and usage live in the StateStore, so these work while a server runs (it picks a
new catalog up within seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
import yaml
from rich.table import Table

from traction.billing.service import BillingError, BillingService, NotFound
from traction.cli_access import Local, events_access
from traction.cli_common import DataDir, WorkspaceRef, console, err, pick_workspace, state_only
from traction.identity.queries import AccountQueries
from traction.workspaces.service import WorkspaceService

plans_app = typer.Typer(
    help="The plan catalog: features, meters, plans and prices.", no_args_is_help=True
)
subscriptions_app = typer.Typer(help="Subscriptions (the manual adapter).", no_args_is_help=True)
AsJson = Annotated[bool, typer.Option("--json", help="JSON, for scripts.")]


def bad_input(message: str) -> typer.Exit:
    """Bad input exits 2 (as a usage error does), after saying what and where."""
    err.print(f"[bold red]Error:[/] {message}")
    return typer.Exit(2)


def _service(state: Any) -> BillingService:
    return BillingService(state, AccountQueries(state).member_count, lambda _ws, _msgs: None)


def read_document(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise bad_input(f"cannot read {path}: {e.strerror}") from None
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise bad_input(f"{path}: not valid YAML{where}") from None


def print_diff(diff: list[dict[str, Any]]) -> None:
    if not diff:
        console.print("No changes.")
        return
    marks = {"added": "[green]+[/]", "removed": "[red]-[/]", "changed": "[yellow]~[/]"}
    for d in diff:
        fields = f" ({', '.join(d['fields'])})" if d.get("fields") else ""
        console.print(f"{marks[d['change']]} {d['kind']} {d['key']}{fields}")


@plans_app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="The whole catalog, YAML or JSON.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff only.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking.")] = False,
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
) -> None:
    """Show what the catalog changes, then apply it whole (or nothing)."""
    document = read_document(file)
    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        billing = _service(state)
        try:
            preview = billing.apply_catalog(ws, document, dry_run=True)
        except BillingError as e:
            raise bad_input(f"{file}: {e}") from None
        print_diff(preview.diff)
        if dry_run or (not preview.diff and billing.catalog(ws) is not None):
            return
        if not yes and not typer.confirm("Apply these changes?"):
            raise typer.Exit(1)
        result = billing.apply_catalog(ws, document)
    versions = (
        f"; new plan versions: {', '.join(result.new_plan_versions)}"
        if result.new_plan_versions
        else ""
    )
    err.print(f"[green]Catalog version {result.version} applied[/]{versions}.")


@plans_app.command("show")
def show(data_dir: DataDir = None, workspace: WorkspaceRef = None, as_json: AsJson = False) -> None:
    """The plans on sale: features, limits, prices and versions."""
    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        try:
            plans = _service(state).plans(ws)
        except NotFound as e:
            raise bad_input(str(e)) from None
    if as_json:
        print(json.dumps(plans))
        return
    t = Table("plan", "version", "kind", "monthly", "yearly", "features")
    for p in plans:
        prices = {x["interval"]: x for x in p["prices"]}

        def price(interval: str, p: dict[str, Any] = p, prices: dict[str, Any] = prices) -> str:
            x = prices.get(interval)
            if x is None:
                return "—"
            seat = f" + {x['per_seat']}/seat" if float(x["per_seat"]) else ""
            usage = " + usage" if x["usage"] else ""
            return f"{x['flat']} {p['currency']}{seat}{usage}"

        feats = ", ".join(
            k + (f" ≤ {g['limit']:,}" if g.get("limit") is not None else "")
            + (f" = {g['value']}" if g.get("value") is not None else "")
            for k, g in p["features"].items()
        )  # fmt: skip
        t.add_row(p["key"], str(p["version"]), p["kind"], price("month"), price("year"), feats)
    console.print(t)


def usage(
    account: Annotated[str, typer.Argument(help="The account (group) key.")],
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
    as_json: AsJson = False,
) -> None:
    """An account's plan, usage against limits, and invoice preview."""
    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        billing = _service(state)
        try:
            ents = billing.entitlements(ws, account)
            invoice = billing.invoice(ws, account).as_dict()
        except NotFound as e:
            raise bad_input(str(e)) from None
    if as_json:
        print(json.dumps({**ents, "invoice_preview": invoice}))
        return
    console.print(
        f"[bold]{account}[/]: plan {ents['plan'] or '—'} ({ents['status'] or 'no subscription'})"
    )
    t = Table("feature", "granted", "usage", "limit", "resets")
    for key, d in ents["entitlements"].items():
        t.add_row(key, "yes" if d["granted"] else f"no ({d['reason']})",
                  "" if d["usage"] is None else f"{d['usage']:,}",
                  "" if d["limit"] is None else f"{d['limit']:,}", (d["resets_at"] or "")[:10])  # fmt: skip
    console.print(t)
    console.print(f"Invoice preview: {invoice['total']} {invoice['currency']}")


@subscriptions_app.command("start")
def start(
    account: Annotated[str, typer.Argument(help="The account (group) key.")],
    plan: Annotated[str, typer.Argument(help="The plan key.")],
    interval: Annotated[str, typer.Option(help="month or year.")] = "month",
    seats: Annotated[int, typer.Option(min=1, help="Seats billed.")] = 1,
    no_trial: Annotated[bool, typer.Option("--no-trial", help="Skip the plan's trial.")] = False,
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
    url: Annotated[str | None, typer.Option(help="A server's URL (with --key).")] = None,
    key: Annotated[str | None, typer.Option(help="A secret key, with --url.")] = None,
) -> None:
    """Start a subscription now (no payment provider: the manual adapter)."""
    with events_access(data_dir, workspace, url, key) as access:
        if isinstance(access, Local):
            try:
                sub = access.ctx.billing.subscribe(access.workspace_id, account, plan,
                                                   interval=interval, seats=seats, trial=not no_trial)  # fmt: skip
            except (BillingError, NotFound) as e:
                raise bad_input(str(e)) from None
            status = sub.status
        else:
            r = access.client.post("/api/v1/subscriptions", json={"account": account, "plan": plan,
                                   "interval": interval, "seats": seats, "trial": not no_trial})  # fmt: skip
            if r.status_code in (404, 422):
                raise bad_input(r.json()["error"])
            r.raise_for_status()
            status = r.json()["status"]
    err.print(f"[green]{account}[/] is on {plan} ({status}).")


def _change(
    what: str, account: str, body: dict[str, Any] | None, data_dir: Any, workspace: Any, url: Any,
    key: Any,
) -> None:  # fmt: skip
    """One subscription change: `what` is the API's path step, `body` its JSON."""
    with events_access(data_dir, workspace, url, key) as access:
        if isinstance(access, Local):
            billing = access.ctx.billing
            method: Any = {"change": billing.change_plan, "seats": billing.set_seats}.get(what)
            try:
                t = (method(access.workspace_id, account, *body.values()) if method and body
                     else getattr(billing, what)(access.workspace_id, account))  # fmt: skip
            except (BillingError, NotFound) as e:
                raise bad_input(str(e)) from None
            name, mrr_after = t.name, str(t.mrr_after)
        else:
            path = f"/api/v1/subscriptions/{quote(account, safe='')}/{what}"
            r = access.client.post(path, json=body)
            if r.status_code in (404, 422):
                raise bad_input(r.json()["error"])
            r.raise_for_status()
            name, mrr_after = r.json()["change"], r.json()["mrr_after"]
    err.print(f"[green]{account}[/]: {name.replace('_', ' ')} (MRR now {mrr_after}).")


Url = Annotated[str | None, typer.Option(help="A server's URL (with --key).")]
Key = Annotated[str | None, typer.Option(help="A secret key, with --url.")]


@subscriptions_app.command("change")
def change(
    account: Annotated[str, typer.Argument(help="The account (group) key.")],
    plan: Annotated[str, typer.Argument(help="The new plan.")],
    data_dir: DataDir = None, workspace: WorkspaceRef = None, url: Url = None, key: Key = None,
) -> None:  # fmt: skip
    """Upgrade now (prorated) or downgrade at the period's end."""
    _change("change", account, {"plan": plan}, data_dir, workspace, url, key)


@subscriptions_app.command("seats")
def seats(
    account: Annotated[str, typer.Argument(help="The account (group) key.")],
    seats: Annotated[int, typer.Argument(help="The new number of seats.")],
    data_dir: DataDir = None, workspace: WorkspaceRef = None, url: Url = None, key: Key = None,
) -> None:  # fmt: skip
    """Change the number of seats now (prorated either way)."""
    _change("seats", account, {"seats": seats}, data_dir, workspace, url, key)


@subscriptions_app.command("cancel")
def cancel(
    account: Annotated[str, typer.Argument(help="The account (group) key.")],
    data_dir: DataDir = None, workspace: WorkspaceRef = None, url: Url = None, key: Key = None,
) -> None:  # fmt: skip
    """Cancel at the period's end (a trial: now)."""
    _change("cancel", account, None, data_dir, workspace, url, key)


@subscriptions_app.command("reactivate")
def reactivate(
    account: Annotated[str, typer.Argument(help="The account (group) key.")],
    data_dir: DataDir = None, workspace: WorkspaceRef = None, url: Url = None, key: Key = None,
) -> None:  # fmt: skip
    """Undo a scheduled cancellation."""
    _change("reactivate", account, None, data_dir, workspace, url, key)
