"""The simulated customers' subscriptions, replayed into billing: each purchase, upgrade and
cancellation the simulator decided becomes a real subscription change, at its simulated
time, so the demo's Revenue page, accounts and entitlements have a history.

(The next step, for issue 7: the simulated people check features and consume usage through
the entitlement service while they act, and buy because a limit stopped them.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from traction.billing.service import BillingError, BillingService, NotFound

# the simulator's plan names -> the example catalog's
PLANS = {"starter": "pro", "pro": "business"}
SUBSCRIPTION_EVENTS = ("subscription_started", "plan_upgraded", "subscription_cancelled")


def replay_subscriptions(
    billing: BillingService, workspace_id: str, messages: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Applies the simulator's subscription events in time order, each by the user who made
    it. Returns the events billing emitted meanwhile (collected, not sent: the caller stores
    them with the rest)."""
    if billing.catalog(workspace_id) is None:
        return []
    emitted: list[dict[str, Any]] = []
    real_emit, real_now = billing.emit, billing.now
    billing.emit = lambda _ws, msgs: emitted.extend(msgs)
    clock = _Clock()
    billing.now = clock
    last = None
    try:
        for m in sorted(messages, key=lambda m: m["timestamp"]):
            props = m.get("properties") or {}
            account = props.get("account")
            if not account:
                continue
            at = datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00")).replace(tzinfo=None)
            last = clock.t = at
            billing.advance(at)  # renewals and period ends up to this moment
            user = m.get("userId")
            plan = PLANS.get(str(props.get("plan")), "pro")
            try:
                if m["event"] == "subscription_cancelled":
                    billing.cancel(workspace_id, account, user)
                elif billing.subscription(workspace_id, account) is None:
                    billing.subscribe(workspace_id, account, plan, trial=False, user=user)
                else:
                    billing.change_plan(workspace_id, account, plan, user)
            except (BillingError, NotFound):
                continue  # e.g. the same plan again: nothing to change
        if last is not None:
            billing.advance(last)
    finally:
        billing.emit, billing.now = real_emit, real_now
    return emitted


class _Clock:
    """Billing's clock, at the simulated moment being replayed."""

    t = datetime(1970, 1, 1)

    def __call__(self) -> datetime:
        return self.t
