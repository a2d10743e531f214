"""Dashboard pages for billing: Revenue (MRR and its movements, retention), Plans (the
catalog and its versions), and an account's plan, usage and invoice preview."""

from __future__ import annotations

from datetime import date, timedelta

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from traction.analytics.domain.specs import DateRange
from traction.billing.api import subscription_dict
from traction.billing.domain.revenue import CHANGE_EVENTS
from traction.billing.service import BillingError, NotFound
from traction.web.routes import page_context, render, templates
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


def _months_back(end: date, n: int) -> date:
    y, m = divmod(end.month - 1 - (n - 1), 12)
    return date(end.year + y, m + 1, 1)


@router.get("/w/{ws_id}/revenue")
def revenue_page(request: Request, ws_id: str, months: int = 6) -> HTMLResponse:
    page = page_context(request, ws_id, "revenue")
    ctx = request.app.state.ctx
    months = max(1, min(months, 36))
    events = ctx.events.named_events(ws_id, CHANGE_EVENTS)
    end = max((e["timestamp"].date() for e in events), default=date.today())
    report = ctx.billing.revenue(ws_id, events, _months_back(end, months), end)
    last = DateRange(date_from=end - timedelta(days=29), date_to=end)
    plg = [r for r in ctx.analytics.scorecard(ws_id, last, wait=False) if r["group"] == "Revenue"]
    return render(request, "revenue.html", **page, report=report, months=months, plg=plg,
                  plg_range=last, has_catalog=ctx.billing.catalog(ws_id) is not None)  # fmt: skip


@router.get("/w/{ws_id}/plans")
def plans_page(request: Request, ws_id: str) -> HTMLResponse:
    page = page_context(request, ws_id, "plans")
    billing = request.app.state.ctx.billing
    try:
        plans = billing.plans(ws_id)
    except NotFound:
        plans = []
    latest = billing.last_apply(ws_id)
    return render(request, "plans.html", **page, plans=plans, latest=latest)


@router.get("/w/{ws_id}/accounts/{account_key}/billing")
def account_billing(request: Request, ws_id: str, account_key: str) -> HTMLResponse:
    """The billing part of an account's page (loaded into it)."""
    page_context(request, ws_id, "accounts")
    billing = request.app.state.ctx.billing
    if billing.catalog(ws_id) is None:
        return render(request, "account_billing.html", ws={"id": ws_id}, ents=None)
    try:
        ents = billing.entitlements(ws_id, account_key)
        invoice = billing.invoice(ws_id, account_key).as_dict()
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    sub = billing.subscription(ws_id, account_key)
    history = [e for e in request.app.state.ctx.events.recent(ws_id, account_id=account_key, limit=500)
               if e["name"] in CHANGE_EVENTS or e["name"] in ("plan_downgrade_scheduled",
                                                               "subscription_cancel_scheduled")]  # fmt: skip
    return render(request, "account_billing.html", ws={"id": ws_id}, ents=ents, invoice=invoice,
                  sub=subscription_dict(sub) if sub else None, history=history[:50])  # fmt: skip


# -- the upgrade page: for the product's users, reached by a link (no Traction login) ---------

upgrade_router = APIRouter(include_in_schema=False)


@upgrade_router.get("/upgrade/{token}")
def upgrade_page(request: Request, token: str) -> HTMLResponse:
    try:
        view = request.app.state.ctx.providers.upgrade_view(token[:100])
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    return templates.TemplateResponse(request, "upgrade.html", {"v": view, "token": token})


@upgrade_router.post("/upgrade/{token}")
def upgrade_choose(request: Request, token: str, plan: str = Form("")) -> RedirectResponse:
    """The token is the capability (a page of another site cannot know it)."""
    try:
        url = request.app.state.ctx.providers.upgrade(token[:100], plan[:63])
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    except BillingError as e:
        raise HTTPException(422, str(e)) from None
    return RedirectResponse(url, status_code=303)
