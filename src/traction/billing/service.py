"""Billing use cases: apply the catalog, subscribe and change plans (the manual adapter),
check and consume entitlements, preview the invoice.

The hot path is `check` and `consume`. A consume is one transaction: the idempotency record
first (a retry finds it and gets the same answer), then one conditional UPDATE of the usage
row (`used + q <= limit`), which both SQLite (one writer at a time) and PostgreSQL (the row
lock, and the condition re-checked on the locked row) make atomic: a hard limit is never
exceeded, whatever the concurrency.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import JSON, bindparam, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from traction.audit.service import record
from traction.billing.domain.catalog import SEATS, Catalog, Feature, Meter, Plan
from traction.billing.domain.entitlements import Decision, crossed, decide
from traction.billing.domain.meters import Running, aggregate, matches, value_of
from traction.billing.domain.periods import add_months, period_containing, usage_window
from traction.billing.domain.pricing import Invoice, invoice_preview, recurring_amount
from traction.billing.domain.revenue import Change, cohorts, monthly, movements
from traction.billing.domain.subscriptions import (
    SubState,
    Transition,
    advance,
    cancel,
    change_plan,
    change_seats,
    mrr,
    reactivate,
)
from traction.billing.models import (
    CatalogVersion,
    MeterValue,
    PlanVersion,
    Subscription,
    Usage,
)
from traction.store.state import StateStore, UTCDateTime, insert_for, utcnow
from traction.validation import describe

LIVE = ("trialing", "active", "past_due")
# The hot path's statements, built once (building one costs more than running it).
_LIVE_SUB = (
    select(Subscription.plan_key, Subscription.plan_version, Subscription.interval,
           Subscription.status, Subscription.seats, Subscription.period_start,
           Subscription.period_end, Subscription.trial_end, Subscription.cancel_at_period_end,
           Subscription.pending_plan_key, Subscription.canceled_at)
    .where(Subscription.workspace_id == bindparam("ws"), Subscription.account == bindparam("account"),
           Subscription.status.in_(LIVE))
    .order_by(Subscription.created_at.desc())
    .limit(1)
)  # fmt: skip
_USED = select(Usage.used).where(
    Usage.workspace_id == bindparam("ws"), Usage.account == bindparam("account"),
    Usage.feature == bindparam("feature"), Usage.window_start == bindparam("start"))  # fmt: skip
_METERED = select(MeterValue.value).where(
    MeterValue.workspace_id == bindparam("ws"), MeterValue.account == bindparam("account"),
    MeterValue.feature == bindparam("feature"), MeterValue.window_start == bindparam("start"))  # fmt: skip


class BillingError(ValueError):
    """Bad input: the message says what and where (an API answers 4xx with it)."""


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class ApplyResult:
    version: int | None  # None: a dry run, or nothing changed
    diff: list[dict[str, Any]]
    new_plan_versions: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "diff": self.diff,
            "new_plan_versions": self.new_plan_versions,
        }


def parse_catalog(document: Any) -> Catalog:
    if not isinstance(document, dict):
        raise BillingError(
            "the catalog must be an object with currency, features, meters and plans"
        )
    try:
        return Catalog.model_validate(document)
    except ValidationError as e:
        raise BillingError(describe(e)) from None


def catalog_diff(old: Catalog | None, new: Catalog) -> list[dict[str, Any]]:
    """What applying `new` changes: per feature, meter and plan, added / removed / changed
    (with the fields that changed), and the currency."""
    out: list[dict[str, Any]] = []
    if old is not None and old.currency != new.currency:
        out.append({"kind": "currency", "key": "", "change": "changed", "fields": ["currency"]})
    for kind in ("features", "meters", "plans"):
        before = {x.key: x.model_dump(mode="json") for x in (getattr(old, kind) if old else [])}
        after = {x.key: x.model_dump(mode="json") for x in getattr(new, kind)}
        for key in sorted(before.keys() | after.keys()):
            if key not in before:
                out.append({"kind": kind[:-1], "key": key, "change": "added"})
            elif key not in after:
                out.append({"kind": kind[:-1], "key": key, "change": "removed"})
            elif before[key] != after[key]:
                fields = sorted(f for f in after[key].keys() | before[key].keys()
                                if before[key].get(f) != after[key].get(f))  # fmt: skip
                out.append({"kind": kind[:-1], "key": key, "change": "changed", "fields": fields})
    return out


def _latest_catalog(s: Session, workspace_id: str, *, lock: bool = False) -> CatalogVersion | None:
    stmt = (
        select(CatalogVersion)
        .where(CatalogVersion.workspace_id == workspace_id)
        .order_by(CatalogVersion.version.desc())
        .limit(1)
    )
    return s.scalars(stmt.with_for_update() if lock else stmt).first()


def _insert_ignore(
    session: Session, table: Any, values: dict[str, Any], keys: Sequence[str]
) -> int:
    """INSERT … ON CONFLICT DO NOTHING on either store; returns rows inserted (by RETURNING:
    a driver's rowcount for a skipped insert is not to be trusted)."""
    ins = insert_for(session, table).values(**values)
    stmt = ins.on_conflict_do_nothing(index_elements=list(keys)).returning(table.c[keys[0]])
    return len(session.execute(stmt).all())


class BillingService:
    CATALOG_TTL = 5.0
    SUB_TTL = 2.0

    def __init__(
        self,
        state: StateStore,
        members: Callable[[str, str], int],
        emit: Callable[[str, list[dict[str, Any]]], None],
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        """`members(ws, account)`: the account's members (the seats meter); `emit(ws,
        messages)`: Segment messages into the event log (subscription changes, upgrade
        triggers)."""
        self.state = state
        self.members = members
        self.emit = emit
        self.now = now
        self._consumes = _Consumes(state, now)
        self._subs: dict[tuple[str, str], tuple[float, SubState | None]] = {}
        self._catalogs: dict[str, tuple[float, Catalog | None]] = {}
        self._versions: dict[str, tuple[float, dict[str, int]]] = {}
        self._plans: dict[tuple[str, str, int], Plan] = {}
        self._lock = threading.Lock()

    # -- the catalog ----------------------------------------------------------------------------

    def catalog(self, workspace_id: str) -> Catalog | None:
        now = time.monotonic()
        with self._lock:
            hit = self._catalogs.get(workspace_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.state.session() as s:
            row = _latest_catalog(s, workspace_id)
            cat = Catalog.model_validate(row.document) if row else None
        with self._lock:
            self._catalogs[workspace_id] = (now + self.CATALOG_TTL, cat)
        return cat

    def _need_catalog(self, workspace_id: str) -> Catalog:
        cat = self.catalog(workspace_id)
        if cat is None:
            raise NotFound(
                "this workspace has no plan catalog yet: apply one (PUT /api/v1/catalog)"
            )
        return cat

    def apply_catalog(
        self, workspace_id: str, document: Any, *, dry_run: bool = False
    ) -> ApplyResult:
        """All or nothing: the whole document is checked, then stored as a new version with
        a new version of each plan whose terms changed (subscribers keep theirs)."""
        new = parse_catalog(document)
        with self.state.session() as s:
            last = _latest_catalog(s, workspace_id, lock=True)
            old = Catalog.model_validate(last.document) if last else None
            diff = catalog_diff(old, new)
            if (
                old is not None
                and old.currency != new.currency
                and self._any_subscription(s, workspace_id)
            ):
                raise BillingError(
                    f"currency: the catalog bills in {old.currency} and has subscribers; "
                    "a currency change needs a new workspace"
                )
            if dry_run or (last is not None and not diff):
                return ApplyResult(None, diff, [])
            version = (last.version if last else 0) + 1
            s.add(CatalogVersion(workspace_id=workspace_id, version=version,
                                 document=new.model_dump(mode="json", by_alias=True), diff=diff,
                                 applied_at=utcnow()))  # fmt: skip
            created = []
            for plan in new.plans:
                doc = plan.model_dump(mode="json", by_alias=True)
                current = s.scalars(
                    select(PlanVersion)
                    .where(
                        PlanVersion.workspace_id == workspace_id, PlanVersion.plan_key == plan.key
                    )
                    .order_by(PlanVersion.version.desc())
                    .limit(1)
                ).first()
                if current is None or current.document != doc:
                    n = (current.version if current else 0) + 1
                    s.add(PlanVersion(workspace_id=workspace_id, plan_key=plan.key, version=n,
                                      document=doc, created_at=utcnow()))  # fmt: skip
                    created.append(f"{plan.key}@{n}")
            record(s, workspace_id, "catalog.applied", f"v{version}", diff=diff)
        with self._lock:
            self._catalogs.pop(workspace_id, None)
            self._versions.pop(workspace_id, None)
        return ApplyResult(version, diff, created)

    def last_apply(self, workspace_id: str) -> dict[str, Any] | None:
        """The catalog's current version: when it was applied and what it changed."""
        with self.state.session() as s:
            row = _latest_catalog(s, workspace_id)
            if row is None:
                return None
            return {"version": row.version, "applied_at": row.applied_at, "diff": row.diff}

    @staticmethod
    def _any_subscription(s: Session, workspace_id: str) -> bool:
        return (
            s.scalars(
                select(Subscription.id).where(Subscription.workspace_id == workspace_id).limit(1)
            ).first()
            is not None
        )

    def plans(self, workspace_id: str) -> list[dict[str, Any]]:
        """The current plans, each with its version, features, limits and prices."""
        cat = self._need_catalog(workspace_id)
        versions = self._current_versions(workspace_id)
        return [
            {**p.model_dump(mode="json", by_alias=True), "version": versions.get(p.key, 1),
             "currency": cat.currency}
            for p in cat.plans
        ]  # fmt: skip

    def _current_versions(self, workspace_id: str) -> dict[str, int]:
        """Each plan's newest version (cached like the catalog, which changes with it)."""
        now = time.monotonic()
        with self._lock:
            hit = self._versions.get(workspace_id)
        if hit is not None and hit[0] > now:
            return dict(hit[1])
        with self.state.session() as s:
            rows = s.execute(
                select(PlanVersion.plan_key, PlanVersion.version).where(
                    PlanVersion.workspace_id == workspace_id
                )
            ).all()
        out: dict[str, int] = {}
        for key, v in rows:
            out[key] = max(out.get(key, 0), v)
        with self._lock:
            self._versions[workspace_id] = (now + self.CATALOG_TTL, out)
        return dict(out)

    def _plan_version(self, workspace_id: str, key: str, version: int) -> Plan:
        cache_key = (workspace_id, key, version)
        with self._lock:
            hit = self._plans.get(cache_key)
        if hit is not None:
            return hit
        with self.state.session() as s:
            row = s.scalars(
                select(PlanVersion).where(
                    PlanVersion.workspace_id == workspace_id,
                    PlanVersion.plan_key == key,
                    PlanVersion.version == version,
                )
            ).first()
            if row is None:
                raise NotFound(f"no plan {key} version {version}")
            plan = Plan.model_validate(row.document)
        with self._lock:
            self._plans[cache_key] = plan
        return plan

    # -- subscriptions (the manual adapter: changes apply at once) -------------------------------

    def subscription(self, workspace_id: str, account: str) -> Subscription | None:
        """The account's live subscription (its latest, should it have two)."""
        return self._live_subscriptions(workspace_id, [account]).get(account)

    def subscribe(
        self, workspace_id: str, account: str, plan_key: str, *, interval: str = "month",
        seats: int = 1, trial: bool = True, provider: str = "manual", provider_ref: str | None = None,
        user: str | None = None,
    ) -> Subscription:  # fmt: skip
        """Starts a subscription (a trial first when the plan has one and `trial`). `user`:
        who bought (the change's event is theirs too, so person funnels can reach it)."""
        cat = self._need_catalog(workspace_id)
        plan = cat.plan(plan_key)
        if plan is None:
            raise BillingError(
                f"plan: no plan {plan_key!r} (have: {', '.join(p.key for p in cat.plans)})"
            )
        if plan.kind != "free" and plan.price(interval) is None:  # type: ignore[arg-type]
            raise BillingError(f"interval: plan {plan_key!r} has no {interval}ly price")
        if self.subscription(workspace_id, account) is not None:
            raise BillingError(
                f"account {account!r} has a subscription already: change its plan instead"
            )
        if not 1 <= seats <= 100_000:
            raise BillingError("seats: between 1 and 100,000")
        now = self.now()
        version = self._current_versions(workspace_id).get(plan_key, 1)
        trialing = trial and bool(plan.trial_days)
        end = (
            now + timedelta(days=plan.trial_days or 0)
            if trialing
            else add_months(now, 12 if interval == "year" else 1)
        )
        with self.state.session() as s:
            sub = Subscription(
                workspace_id=workspace_id, account=account, plan_key=plan_key, plan_version=version,
                interval=interval, status="trialing" if trialing else "active", seats=seats,
                period_start=now, period_end=end, trial_end=end if trialing else None,
                cancel_at_period_end=False, provider=provider, provider_ref=provider_ref,
                created_at=now,
            )  # fmt: skip
            s.add(sub)
            s.flush()
            record(s, workspace_id, "subscription.started", account, plan=plan_key, trial=trialing)
        self._forget_sub(workspace_id, account)
        name = "trial_started" if trialing else "subscription_started"
        after = mrr(_state(sub), plan)
        self.emit(workspace_id, [self._account_event(
            account, name, {"subscription": sub.id, "plan": plan_key, "interval": interval,
                            "seats": seats, "status": sub.status,
                            "mrr_before": 0.0, "mrr_after": float(after), "amount_due": float(
                                0 if trialing else recurring_amount(plan, interval, seats))},
            f"{name}:{sub.id}", user, timestamp=now)])  # fmt: skip
        return sub

    def change_plan(
        self, workspace_id: str, account: str, plan_key: str, user: str | None = None
    ) -> Transition:
        """Upgrade at once (prorated) or downgrade at the period's end."""
        return self._transition(workspace_id, account, "change", plan_key, user)

    def set_seats(
        self, workspace_id: str, account: str, seats: int, user: str | None = None
    ) -> Transition:
        """More or fewer seats, at once and prorated (`seats_changed`: expansion or contraction)."""
        if not isinstance(seats, int) or isinstance(seats, bool):
            raise BillingError("seats: a whole number")
        return self._transition(workspace_id, account, "seats", None, user, seats)

    def cancel(self, workspace_id: str, account: str, user: str | None = None) -> Transition:
        return self._transition(workspace_id, account, "cancel", None, user)

    def reactivate(self, workspace_id: str, account: str, user: str | None = None) -> Transition:
        return self._transition(workspace_id, account, "reactivate", None, user)

    def _transition(
        self, workspace_id: str, account: str, what: str, plan_key: str | None = None,
        user: str | None = None, seats: int = 0,
    ) -> Transition:  # fmt: skip
        cat = self._need_catalog(workspace_id)
        now = self.now()
        with self.state.session() as s:
            sub = s.scalars(
                select(Subscription)
                .where(Subscription.workspace_id == workspace_id, Subscription.account == account,
                       Subscription.status.in_(LIVE))
                .order_by(Subscription.created_at.desc())
                .limit(1)
                .with_for_update()
            ).first()  # fmt: skip
            if sub is None:
                raise NotFound(f"account {account!r} has no subscription")
            old = self._plan_version(workspace_id, sub.plan_key, sub.plan_version)
            # first what is due by now (a renewal the scheduled job has not run yet)
            caught_up = advance(_state(sub), {sub.plan_key: old}, self._current_versions(workspace_id),
                                cat, old.trial_end, now)  # fmt: skip
            if caught_up:
                _apply_state(sub, caught_up[-1].state)
                if sub.status not in LIVE:
                    self._forget_sub(workspace_id, account)
                    s.commit()
                    self._emit_transitions(workspace_id, account, sub.id, caught_up)
                    raise NotFound(f"account {account!r} has no subscription (it ended)")
                old = self._plan_version(workspace_id, sub.plan_key, sub.plan_version)
            try:
                if what == "change":
                    new = cat.plan(plan_key or "")
                    if new is None:
                        raise BillingError(f"plan: no plan {plan_key!r}")
                    if new.kind != "free" and new.price(sub.interval) is None:  # type: ignore[arg-type]
                        raise BillingError(f"plan: {new.key!r} has no {sub.interval}ly price")
                    version = self._current_versions(workspace_id).get(new.key, 1)
                    t = change_plan(_state(sub), old, new, version, now, cat.currency)
                elif what == "seats":
                    t = change_seats(_state(sub), old, seats, now, cat.currency)
                elif what == "cancel":
                    t = cancel(_state(sub), old, now)
                else:
                    t = reactivate(_state(sub), old, now)
            except ValueError as e:
                if isinstance(e, BillingError):
                    raise
                raise BillingError(str(e)) from None
            _apply_state(sub, t.state)
            self._forget_sub(workspace_id, account)
            record(s, workspace_id, f"subscription.{t.name}", account, plan=t.state.plan_key,
                   mrr_before=str(t.mrr_before), mrr_after=str(t.mrr_after))  # fmt: skip
            sub_id = sub.id
        if caught_up:
            self._emit_transitions(workspace_id, account, sub_id, caught_up)
        # a request is its own change (two at the same instant are two events)
        self._emit_transitions(
            workspace_id, account, f"{sub_id}:{uuid.uuid4().hex[:12]}", [t], user
        )
        return t

    def advance(self, now: datetime | None = None) -> int:
        """Every subscription whose period (or trial) has ended, brought up to `now`:
        renewals, scheduled downgrades and cancellations, trial ends. Returns the changes.
        Idempotent: a subscription already advanced has nothing left to do."""
        now = now or self.now()
        with self.state.session() as s:
            due = list(s.scalars(select(Subscription.id).where(
                Subscription.status.in_(LIVE), Subscription.period_end <= now)))  # fmt: skip
        changes = 0
        for sub_id in due:
            with self.state.session() as s:
                sub = s.scalars(
                    select(Subscription).where(Subscription.id == sub_id).with_for_update()
                ).first()
                if sub is None or sub.status not in LIVE or sub.period_end > now:
                    continue
                cat = self.catalog(sub.workspace_id)
                if cat is None:
                    continue
                plan = self._plan_version(sub.workspace_id, sub.plan_key, sub.plan_version)
                versions = self._current_versions(sub.workspace_id)
                steps = advance(
                    _state(sub), {sub.plan_key: plan}, versions, cat, plan.trial_end, now
                )
                if not steps:
                    continue
                _apply_state(sub, steps[-1].state)
                ws, account = sub.workspace_id, sub.account
            self._forget_sub(ws, account)
            self._emit_transitions(ws, account, sub_id, steps)
            changes += len(steps)
        return changes

    def _emit_transitions(
        self, workspace_id: str, account: str, sub_id: str, steps: list[Transition],
        user: str | None = None,
    ) -> None:  # fmt: skip
        self.emit(workspace_id, [
            self._account_event(account, t.name, {
                "subscription": sub_id.split(":")[0],
                "plan": t.state.plan_key, "status": t.state.status, "interval": t.state.interval,
                "seats": t.state.seats, "mrr_before": float(t.mrr_before), "mrr_after": float(t.mrr_after),
                "amount_due": float(t.amount_due)},
                f"{t.name}:{sub_id}:{t.at.isoformat()}", user, timestamp=t.at)
            for t in steps
        ])  # fmt: skip

    # -- what a payment provider reports --------------------------------------------------------

    def by_provider_ref(self, workspace_id: str, ref: str) -> Subscription | None:
        with self.state.session() as s:
            return s.scalars(select(Subscription).where(
                Subscription.workspace_id == workspace_id, Subscription.provider_ref == ref)
                .order_by(Subscription.created_at.desc()).limit(1)).first()  # fmt: skip

    def provider_update(
        self, workspace_id: str, sub_id: str, *, status: str | None = None,
        period: tuple[datetime, datetime] | None = None, cancel_at_period_end: bool | None = None,
        event: str | None = None,
    ) -> None:  # fmt: skip
        """Applies what the provider says happened (its word is final on payment): a status,
        a new period, a scheduled cancellation. `event`: an extra event to record
        (`payment_failed`, `invoice_paid`)."""
        with self.state.session() as s:
            sub = s.get(Subscription, sub_id)
            if sub is None or sub.workspace_id != workspace_id:
                raise NotFound(f"no subscription {sub_id}")
            plan = self._plan_version(workspace_id, sub.plan_key, sub.plan_version)
            before_state = _state(sub)
            if status is not None:
                sub.status = status
                if status == "canceled" and sub.canceled_at is None:
                    sub.canceled_at = self.now()
            if period is not None:
                sub.period_start, sub.period_end = period
            if cancel_at_period_end is not None:
                sub.cancel_at_period_end = cancel_at_period_end
            after_state = _state(sub)
            account = sub.account
        self._forget_sub(workspace_id, account)
        changes: list[Transition] = []
        if before_state.status != after_state.status:
            name = {"canceled": "subscription_ended", "past_due": "payment_failed"}.get(
                after_state.status, "subscription_status_changed"
            )
            changes.append(Transition(event or name, self.now(), after_state, mrr(before_state, plan),
                                      mrr(after_state, plan)))  # fmt: skip
        elif event is not None:
            m = mrr(after_state, plan)
            changes.append(Transition(event, self.now(), after_state, m, m))
        if changes:
            self._emit_transitions(
                workspace_id, account, f"{sub_id}:{uuid.uuid4().hex[:12]}", changes
            )

    # -- entitlements ---------------------------------------------------------------------------

    def plan_for(
        self, workspace_id: str, account: str
    ) -> tuple[Catalog, Plan | None, SubState | None]:
        """The account's plan: its subscription's version of it, or the free plan."""
        cat = self._need_catalog(workspace_id)
        sub = self._live(workspace_id, account)
        if sub is not None:
            return cat, self._plan_version(workspace_id, sub.plan_key, sub.plan_version), sub
        return cat, cat.free_plan, None

    def _live(self, workspace_id: str, account: str) -> SubState | None:
        """The account's live subscription, cached for SUB_TTL seconds (changes made here
        clear it at once; another replica's show within SUB_TTL)."""
        key, now = (workspace_id, account), time.monotonic()
        hit = self._subs.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.state.engine.connect() as c:
            row = c.execute(_LIVE_SUB, {"ws": workspace_id, "account": account}).first()
        st = SubState(*row) if row is not None else None
        if len(self._subs) > 100_000:
            self._subs.clear()
        self._subs[key] = (now + self.SUB_TTL, st)
        return st

    def _forget_sub(self, workspace_id: str, account: str) -> None:
        self._subs.pop((workspace_id, account), None)

    def usage(
        self, workspace_id: str, account: str, feature: str, cat: Catalog,
        sub: SubState | None, at: datetime,
    ) -> tuple[int, tuple[datetime, datetime]]:  # fmt: skip
        """The account's usage of a metered feature in the window `at` falls in."""
        f = cat.feature(feature)
        assert f is not None
        window = self._window(f, sub, at)
        if f.meter == SEATS:
            return self.members(workspace_id, account), window
        params = {"ws": workspace_id, "account": account, "feature": feature, "start": window[0]}
        with self.state.engine.connect() as c:
            if f.meter is None:
                return int(c.execute(_USED, params).scalar() or 0), window
            value = c.execute(_METERED, params).scalar()
        return int(Decimal(value or 0)), window

    @staticmethod
    def _window(
        f: Feature, sub: SubState | Subscription | None, at: datetime
    ) -> tuple[datetime, datetime]:
        """The usage window of `f` that `at` falls in: a calendar period, or the account's
        billing periods (anchored at its subscription's period; calendar months without one)."""
        if f.reset != "billing_period" or sub is None:
            return usage_window(f.reset, at)
        if sub.period_start <= at < sub.period_end:
            return sub.period_start, sub.period_end
        return period_containing(sub.period_start, 12 if sub.interval == "year" else 1, at)

    # -- meters (the reactor), and their recomputation from the log ---------------------------------

    def apply_events(self, batch: Sequence[Mapping[str, Any]]) -> None:
        """Adds a batch of stored events to the meters. Idempotent: each value remembers the
        last seq it counted, and events at or below it are skipped (a redelivered batch)."""
        by_ws: dict[str, list[Mapping[str, Any]]] = {}
        for ev in batch:
            if ev.get("account_id"):
                by_ws.setdefault(ev["workspace_id"], []).append(ev)
        for ws, events in by_ws.items():
            cat = self.catalog(ws)
            if cat is None:
                continue
            metered = [(f, cat.meter(f.meter)) for f in cat.features
                       if f.type == "metered" and f.meter not in (None, SEATS)]  # fmt: skip
            if not metered:
                continue
            # the batch's accounts' subscriptions in one query, then each counted value with
            # its meter row's key, then those rows in one query: per event, only dict lookups
            subs = self._live_subscriptions(ws, {ev["account_id"] for ev in events})
            counted: list[tuple[tuple[str, str, datetime], Meter, Decimal | str, Mapping[str, Any], tuple[datetime, datetime]]] = []  # fmt: skip
            for ev in events:
                props = ev.get("properties") or {}
                for f, meter in metered:
                    if meter is None or not matches(meter, ev.get("name"), props):
                        continue
                    value = value_of(meter, props)
                    if value is None:
                        continue
                    window = self._window(f, subs.get(ev["account_id"]), ev["timestamp"])
                    counted.append(((ev["account_id"], f.key, window[0]), meter, value, ev, window))
            if not counted:
                continue
            triggers: list[dict[str, Any]] = []
            recent = self.now() - timedelta(hours=24)
            with self.state.session() as s:
                rows = self._meter_rows(s, ws, {c[0]: c[4] for c in counted})
                runs: dict[tuple[str, str, datetime], Running] = {}
                for key, meter, value, ev, window in counted:
                    row = rows[key]
                    seq = int(ev["seq"])
                    if seq <= row.applied_seq:
                        continue
                    run = runs.get(key)
                    if run is None:
                        run = runs[key] = _running(meter.aggregation, row)
                    before = int(run.value)
                    run.add(value, ev["timestamp"], seq)
                    row.applied_seq = seq
                    if ev["timestamp"] >= recent:  # live usage, not a backfill of history
                        triggers += self._meter_triggers(
                            ws, key[0], key[1], before, int(run.value), window, ev
                        )
                for key, run in runs.items():
                    _store_running(run, rows[key])
            if triggers:
                self.emit(ws, triggers)

    def _meter_triggers(
        self, ws: str, account: str, feature: str, before: int, after: int,
        window: tuple[datetime, datetime], ev: Mapping[str, Any],
    ) -> list[dict[str, Any]]:  # fmt: skip
        """`$limit_approaching` / `$limit_reached` when events move a meter past 80% / 100% of
        the plan's limit: once per window (the message id is the window's)."""
        _cat, plan, _sub = self.plan_for(ws, account)
        grant = plan.features.get(feature) if plan else None
        if grant is None or grant.limit is None or after <= before:
            return []
        return [self._account_event(
            account, t, {"feature": feature, "usage": after, "limit": grant.limit,
                         "plan": plan.key if plan else None},
            f"{t}:{account}:{feature}:{window[0].isoformat()}", ev.get("user_id"),
            timestamp=ev["timestamp"]) for t in crossed(grant.limit, before, after)]  # fmt: skip

    def _live_subscriptions(
        self, workspace_id: str, accounts: Iterable[str]
    ) -> dict[str, Subscription]:
        """Each account's live subscription, the latest first (those without one are
        absent): one query per 500 accounts, so a batch of events reads them all at once."""
        out: dict[str, Subscription] = {}
        wanted = sorted(accounts)
        with self.state.session() as s:
            for i in range(0, len(wanted), 500):
                for sub in s.scalars(
                    select(Subscription)
                    .where(Subscription.workspace_id == workspace_id,
                           Subscription.account.in_(wanted[i : i + 500]),
                           Subscription.status.in_(LIVE))
                    .order_by(Subscription.created_at.desc())
                ):  # fmt: skip
                    out.setdefault(sub.account, sub)
        return out

    @staticmethod
    def _meter_rows(
        s: Session, ws: str, windows: Mapping[tuple[str, str, datetime], tuple[datetime, datetime]]
    ) -> dict[tuple[str, str, datetime], MeterValue]:
        """The meter rows of these (account, feature, window start) keys, read in one query
        per 500 accounts; those not stored yet are added."""
        rows: dict[tuple[str, str, datetime], MeterValue] = {}
        accounts = sorted({a for a, _, _ in windows})
        features = sorted({f for _, f, _ in windows})
        starts = sorted({w for _, _, w in windows})
        for i in range(0, len(accounts), 500):
            for row in s.scalars(select(MeterValue).where(
                MeterValue.workspace_id == ws, MeterValue.account.in_(accounts[i : i + 500]),
                MeterValue.feature.in_(features), MeterValue.window_start.in_(starts))):  # fmt: skip
                key = (row.account, row.feature, row.window_start)
                if key in windows:
                    rows[key] = row
        for key, (start, end) in windows.items():
            if key not in rows:
                rows[key] = MeterValue(workspace_id=ws, account=key[0], feature=key[1],
                                       window_start=start, window_end=end, value="0", latest_at=None,
                                       latest_seq=0, applied_seq=0, distinct_values=[])  # fmt: skip
                s.add(rows[key])
        return rows

    def meter_values(
        self, workspace_id: str, account: str, feature: str
    ) -> dict[datetime, Decimal]:
        """What the reactor holds: the feature's value per window start."""
        with self.state.session() as s:
            rows = s.execute(select(MeterValue.window_start, MeterValue.value).where(
                MeterValue.workspace_id == workspace_id, MeterValue.account == account,
                MeterValue.feature == feature)).all()  # fmt: skip
        return {w: Decimal(v) for w, v in rows}

    def recompute(
        self, workspace_id: str, account: str, feature: str, events: Iterable[Mapping[str, Any]]
    ) -> dict[datetime, Decimal]:
        """The same values from the raw log (`events`: the account's, any order): per window,
        the meter's aggregate, computed from scratch."""
        cat = self._need_catalog(workspace_id)
        f = cat.feature(feature)
        meter = cat.meter(f.meter) if f is not None and f.meter else None
        if f is None or meter is None:
            raise BillingError(f"feature: {feature!r} is not measured by a meter")
        sub = self.subscription(workspace_id, account)
        windows: dict[datetime, list[Mapping[str, Any]]] = {}
        for ev in events:
            props = ev.get("properties") or {}
            if matches(meter, ev.get("name"), props) and value_of(meter, props) is not None:
                windows.setdefault(self._window(f, sub, ev["timestamp"])[0], []).append(ev)
        return {w: aggregate(meter, evs) for w, evs in windows.items()}

    def check(
        self, workspace_id: str, account: str, feature: str, requested: int = 0,
        user: str | None = None,
    ) -> Decision:  # fmt: skip
        cat, plan, sub = self.plan_for(workspace_id, account)
        f = cat.feature(feature)
        if f is None:
            raise BillingError(f"feature: no feature {feature!r} in the catalog")
        now = self.now()
        used, window = (
            (0, None)
            if f.type != "metered"
            else self.usage(workspace_id, account, feature, cat, sub, now)
        )
        d = decide(cat, plan, feature, used, requested, window[1] if window else None)
        if not d.granted:
            hour = now.strftime("%Y-%m-%dT%H")
            self.emit(workspace_id, [self._account_event(
                account, "$feature_locked", {"feature": feature, "reason": d.reason,
                                             "plan": plan.key if plan else None},
                f"$feature_locked:{account}:{feature}:{hour}", user, timestamp=now)])  # fmt: skip
        return d

    def entitlements(self, workspace_id: str, account: str) -> dict[str, Any]:
        """Every feature's decision for the account: what an SDK caches."""
        cat, plan, sub = self.plan_for(workspace_id, account)
        now = self.now()
        out = {}
        for f in cat.features:
            used, window = (
                (0, None)
                if f.type != "metered"
                else self.usage(workspace_id, account, f.key, cat, sub, now)
            )
            out[f.key] = decide(cat, plan, f.key, used, 0, window[1] if window else None).as_dict()
        return {"account": account, "plan": plan.key if plan else None,
                "status": sub.status if sub else None, "entitlements": out}  # fmt: skip

    def consume(
        self, workspace_id: str, account: str, feature: str, quantity: int, idempotency_key: str,
        user: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Atomically adds `quantity` to the account's usage if the plan allows it."""
        return self.submit_consume(
            workspace_id, account, feature, quantity, idempotency_key, user
        ).result(60)

    def submit_consume(
        self, workspace_id: str, account: str, feature: str, quantity: int, idempotency_key: str,
        user: str | None = None,
    ) -> Future[dict[str, Any]]:  # fmt: skip
        """`consume`, answered through a future: checked here (BillingError at once), applied
        by the consume queue, many requests to one commit (see `_Consumes`). An async caller
        awaits the future and holds no thread meanwhile."""
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise BillingError("quantity: a whole number of at least 1")
        cat, plan, sub = self.plan_for(workspace_id, account)
        f = cat.feature(feature)
        if f is None:
            raise BillingError(f"feature: no feature {feature!r} in the catalog")
        if f.type != "metered":
            raise BillingError(f"feature: {feature!r} is not metered; use a check")
        if f.meter is not None:
            raise BillingError(
                f"feature: {feature!r} is measured from events (meter {f.meter!r}): send the events"
            )
        grant = plan.features.get(feature) if plan else None
        allowed = grant is not None and grant.enabled
        op = _Consume(
            workspace_id, account, feature, quantity, idempotency_key, self._window(f, sub, self.now()),
            allowed, grant.limit if grant is not None else None,
            allowed and grant is not None and grant.limit is not None and not grant.soft,
        )  # fmt: skip
        out: Future[dict[str, Any]] = Future()

        def done(applied: Future[tuple[dict[str, Any] | None, bool]]) -> None:
            try:
                response, fresh = applied.result()
            except Exception as e:
                out.set_exception(e)
                return
            if response is None:
                out.set_exception(
                    BillingError("idempotency_key: used before for a different request")
                )
                return
            out.set_result(response)
            if fresh:
                self._consumed(op, response, plan, user)

        self._consumes.submit(op).add_done_callback(done)
        return out

    def _consumed(
        self, op: _Consume, response: dict[str, Any], plan: Plan | None, user: str | None
    ) -> None:
        """The upgrade triggers a new consume fires."""
        after, limit = response["usage"], op.limit
        triggers = crossed(limit, after - op.quantity, after) if response["granted"] else (
            ["$limit_reached"] if op.allowed else ["$feature_locked"])  # fmt: skip
        if triggers:
            self.emit(op.workspace_id, [self._account_event(
                op.account, t, {"feature": op.feature, "usage": after, "limit": limit,
                                "plan": plan.key if plan else None},
                f"{t}:{op.account}:{op.feature}:{op.window[0].isoformat()}", user, timestamp=self.now())
                for t in triggers])  # fmt: skip

    def close(self) -> None:
        self._consumes.stop()

    def invoice(self, workspace_id: str, account: str) -> Invoice:
        cat, plan, sub = self.plan_for(workspace_id, account)
        if plan is None:
            raise NotFound(f"account {account!r} has no plan and the catalog no free plan")
        now = self.now()
        usage = {f.key: self.usage(workspace_id, account, f.key, cat, sub, now)[0]
                 for f in cat.features if f.type == "metered" and f.meter != SEATS}  # fmt: skip
        seats = sub.seats if sub else 1
        return invoice_preview(cat, plan, sub.interval if sub else "month", seats, usage)

    # -- revenue --------------------------------------------------------------------------------

    def revenue(
        self, workspace_id: str, events: Iterable[Mapping[str, Any]], first: date, last: date,
        gross_margin: Decimal = Decimal("0.8"),
    ) -> dict[str, Any]:  # fmt: skip
        """MRR, its movements and the retention metrics month by month, from the subscription
        events (`events`: the workspace's, as the event log holds them)."""
        changes = [
            Change(ev.get("account_id") or props.get("account", ""), str(props.get("subscription", "")),
                   ev["timestamp"], Decimal(str(props["mrr_before"])), Decimal(str(props["mrr_after"])))
            for ev in events
            if isinstance(props := ev.get("properties") or {}, dict)
            and "mrr_before" in props and "mrr_after" in props
        ]  # fmt: skip
        moves = movements(changes)
        months = monthly(moves, first, last)

        def num(x: Decimal | None, places: str = "0.01") -> str | None:
            return None if x is None else str(x.quantize(Decimal(places)))

        return {"currency": (self.catalog(workspace_id) or Catalog()).currency, "months": [
            {"month": m.month.isoformat(), "mrr": num(m.mrr_end), "arr": num(m.arr),
             "mrr_start": num(m.mrr_start), "customers": m.customers_end,
             "movements": {k: num(v) for k, v in m.moves.items()},
             "net_revenue_retention": num(m.net_revenue_retention, "0.0001"),
             "gross_revenue_retention": num(m.gross_revenue_retention, "0.0001"),
             "net_revenue_retention_12m": num(m.nrr_12m, "0.0001"),
             "gross_revenue_retention_12m": num(m.grr_12m, "0.0001"),
             "customer_churn_rate": num(m.customer_churn_rate, "0.0001"),
             "revenue_churn_rate": num(m.revenue_churn_rate, "0.0001"),
             "arpa": num(m.arpa), "quick_ratio": num(m.quick_ratio, "0.01"),
             "ltv": num(m.ltv(gross_margin))}
            for m in months],
            "cohorts": [
                {"month": c.month.isoformat(), "accounts": c.accounts, "mrr": num(c.mrr),
                 "net": [num(x, "0.0001") for x in c.net], "gross": [num(x, "0.0001") for x in c.gross]}
                for c in cohorts(moves, last) if c.month >= first.replace(day=1)],
        }  # fmt: skip

    # -- events -------------------------------------------------------------------------------

    @staticmethod
    def _account_event(
        account: str, name: str, props: dict[str, Any], message_id: str, user: str | None = None,
        timestamp: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A track call on the account (and on the user, when the caller said who): upgrade
        triggers and subscription changes land in the log beside the product's own events."""
        ids = {"userId": user} if user else {"anonymousId": f"account:{account}"}
        when = {"timestamp": timestamp.isoformat() + "Z"} if timestamp else {}
        return {"type": "track", "event": name, "properties": {**props, "account": account},
                "context": {"groupId": account, "library": {"name": "traction-billing"}},
                "messageId": message_id[:200], **ids, **when}  # fmt: skip


def _running(aggregation: str, row: MeterValue) -> Running:
    """A stored value back as a running aggregate."""
    run = Running(aggregation)
    value = Decimal(row.value)
    if aggregation in ("COUNT", "SUM"):
        run.total = value
    elif aggregation == "MAX":
        run.maximum = value if row.latest_seq or row.applied_seq else None
    elif aggregation == "LATEST" and row.latest_at is not None:
        run.latest = (row.latest_at, row.latest_seq, value)
    elif aggregation == "UNIQUE_COUNT":
        run.distinct = set(row.distinct_values or [])
    return run


def _store_running(run: Running, row: MeterValue) -> None:
    row.value = str(run.value)
    if run.aggregation == "LATEST" and run.latest is not None:
        row.latest_at, row.latest_seq = run.latest[0], run.latest[1]
    if run.aggregation == "UNIQUE_COUNT":
        row.distinct_values = sorted(run.distinct)


def _state(sub: Subscription) -> SubState:
    return SubState(sub.plan_key, sub.plan_version, sub.interval, sub.status, sub.seats,
                    sub.period_start, sub.period_end, sub.trial_end, sub.cancel_at_period_end,
                    sub.pending_plan_key, sub.canceled_at)  # fmt: skip


def _apply_state(sub: Subscription, st: SubState) -> None:
    sub.plan_key, sub.plan_version, sub.interval, sub.status = (
        st.plan_key,
        st.plan_version,
        st.interval,
        st.status,
    )
    sub.seats, sub.period_start, sub.period_end, sub.trial_end = (
        st.seats,
        st.period_start,
        st.period_end,
        st.trial_end,
    )
    sub.cancel_at_period_end, sub.pending_plan_key, sub.canceled_at = (
        st.cancel_at_period_end, st.pending_plan_key, st.canceled_at)  # fmt: skip


@dataclass(frozen=True)
class _Consume:
    workspace_id: str
    account: str
    feature: str
    quantity: int
    key: str
    window: tuple[datetime, datetime]
    allowed: bool
    limit: int | None
    hard: bool


# The consume path's statements: plain SQL that SQLite and PostgreSQL both take, built once
# (building a statement costs more than running it: 680 µs a consume before, see benchmarks).
_DT = UTCDateTime()
_RECORD = text(
    "INSERT INTO billing_usage_records (workspace_id, idempotency_key, account, feature, quantity,"
    " granted, response, created_at) VALUES (:ws, :key, :account, :feature, :quantity, false,"
    " '{}', :now) ON CONFLICT (workspace_id, idempotency_key) DO NOTHING RETURNING id"
).bindparams(bindparam("now", type_=_DT))
_REPLAY = text(
    "SELECT account, feature, quantity, response FROM billing_usage_records"
    " WHERE workspace_id = :ws AND idempotency_key = :key"
).columns(response=JSON())
_UPSERT = "INSERT INTO billing_usage (workspace_id, account, feature, window_start, window_end, used)" \
    " VALUES (:ws, :account, :feature, :start, :end, :quantity)" \
    " ON CONFLICT (workspace_id, account, feature, window_start)" \
    " DO UPDATE SET used = billing_usage.used + excluded.used{cond} RETURNING used"  # fmt: skip
_UPSERT_HARD = text(_UPSERT.format(cond=" WHERE billing_usage.used + excluded.used <= :limit")).bindparams(
    bindparam("start", type_=_DT), bindparam("end", type_=_DT))  # fmt: skip
_UPSERT_SOFT = text(_UPSERT.format(cond="")).bindparams(
    bindparam("start", type_=_DT), bindparam("end", type_=_DT))  # fmt: skip
_CURRENT = text(
    "SELECT used FROM billing_usage WHERE workspace_id = :ws AND account = :account"
    " AND feature = :feature AND window_start = :start"
).bindparams(bindparam("start", type_=_DT))
_ANSWER = text(
    "UPDATE billing_usage_records SET granted = :granted, response = :response WHERE id = :id"
).bindparams(bindparam("response", type_=JSON()))


def _apply_consume(
    s: Connection, op: _Consume, now: datetime
) -> tuple[dict[str, Any] | None, bool]:
    """One consume inside a transaction: (the answer, whether it is new). The answer is None
    when the key was used for a different request (nothing changed). Three statements on the
    usual path: the idempotency record (the gate), one conditional upsert of the usage row
    (`used + q <= limit` decided on the locked row), the record's answer."""
    ids = {"ws": op.workspace_id, "account": op.account, "feature": op.feature}
    fresh = s.execute(_RECORD, {**ids, "key": op.key, "quantity": op.quantity, "now": now}).first()
    if fresh is None:
        old = s.execute(_REPLAY, {"ws": op.workspace_id, "key": op.key}).one()
        if (old.account, old.feature, old.quantity) != (op.account, op.feature, op.quantity):
            return None, False
        return dict(old.response), False
    where = {**ids, "start": op.window[0]}
    after: int | None = None
    if op.allowed and not (op.hard and op.limit is not None and op.quantity > op.limit):
        stmt = _UPSERT_HARD if op.hard else _UPSERT_SOFT
        params = {**where, "end": op.window[1], "quantity": op.quantity}
        if op.hard:
            params["limit"] = op.limit
        after = s.execute(stmt, params).scalar()
    granted = after is not None
    if after is None:
        after = s.execute(_CURRENT, where).scalar() or 0
    response = {
        "granted": granted, "usage": int(after), "limit": op.limit,
        "remaining": None if op.limit is None else max(0, op.limit - int(after)),
        "reason": "granted" if granted else ("limit_reached" if op.allowed else "not_in_plan"),
        "resets_at": op.window[1].isoformat() + "Z",
    }  # fmt: skip
    s.execute(_ANSWER, {"granted": granted, "response": response, "id": fresh[0]})
    return response, True


class _Consumes:
    """Group commit for consumes, like the event writer's: one thread takes every consume
    queued and applies them in order in one transaction, then answers them all. Each is still
    its own conditional UPDATE, so the limit holds; the commit (and its fsync) is shared, and
    requests no longer queue on the database's write lock one by one."""

    MAX_BATCH = 500

    def __init__(self, state: StateStore, now: Callable[[], datetime]) -> None:
        self.state = state
        self.now = now
        self._queue: queue.Queue[
            tuple[_Consume, Future[tuple[dict[str, Any] | None, bool]]] | None
        ] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, op: _Consume) -> Future[tuple[dict[str, Any] | None, bool]]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="traction-consume", daemon=True
                )
                self._thread.start()
        fut: Future[tuple[dict[str, Any] | None, bool]] = Future()
        self._queue.put((op, fut))
        return fut

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout=30)
                self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(
        self, batch: list[tuple[_Consume, Future[tuple[dict[str, Any] | None, bool]]]]
    ) -> None:
        now = self.now()
        engine = self.state.engine  # a Core transaction: the ORM session adds nothing here
        try:
            with engine.begin() as conn:
                results = [_apply_consume(conn, op, now) for op, _ in batch]
        except Exception:  # one bad apple: each on its own, so the others still land
            for op, fut in batch:
                try:
                    with engine.begin() as conn:
                        fut.set_result(_apply_consume(conn, op, now))
                except Exception as e:
                    fut.set_exception(e)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)
