"""Entitlement decisions, pure: may this account use this feature (this much more of it)?
And if not, which plans would let it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from traction.billing.domain.catalog import Catalog, Feature, Plan
from traction.billing.domain.pricing import monthly, recurring_amount

APPROACHING = 0.8  # the share of a limit at which `$limit_approaching` fires


@dataclass(frozen=True)
class Decision:
    feature: str
    granted: bool
    reason: str  # granted | not_in_plan | disabled | limit_reached | soft_limit_exceeded | unknown_feature
    value: Any = None
    limit: int | None = None
    usage: int | None = None
    remaining: int | None = None
    soft_limit: bool = False
    resets_at: datetime | None = None
    upgrade_options: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["resets_at"] = self.resets_at.isoformat() + "Z" if self.resets_at else None
        return out


def decide(
    catalog: Catalog,
    plan: Plan | None,
    feature_key: str,
    usage: int = 0,
    requested: int = 0,
    resets_at: datetime | None = None,
) -> Decision:
    """`usage`: the account's usage in the current period; `requested`: how much more it
    wants (a check with 0 asks whether it may use the feature at all)."""
    feature = catalog.feature(feature_key)
    if feature is None:
        return Decision(feature_key, False, "unknown_feature")
    grant = plan.features.get(feature_key) if plan else None
    if grant is None or not grant.enabled:
        reason = "not_in_plan" if grant is None else "disabled"
        return Decision(
            feature_key,
            False,
            reason,
            upgrade_options=upgrade_options(catalog, plan, feature, usage + requested),
        )
    if feature.type == "boolean":
        return Decision(feature_key, True, "granted", value=True)
    if feature.type == "config":
        return Decision(feature_key, True, "granted", value=grant.value)
    if grant.limit is None:
        return Decision(feature_key, True, "granted", usage=usage, resets_at=resets_at)
    remaining = max(0, grant.limit - usage)
    fits = usage + max(requested, 0) <= grant.limit and (requested > 0 or usage < grant.limit)
    common = {"limit": grant.limit, "usage": usage, "remaining": remaining,
              "soft_limit": grant.soft, "resets_at": resets_at}  # fmt: skip
    if fits:
        return Decision(feature_key, True, "granted", **common)  # type: ignore[arg-type]
    options = upgrade_options(catalog, plan, feature, usage + max(requested, 1))
    if grant.soft:
        return Decision(feature_key, True, "soft_limit_exceeded", upgrade_options=options, **common)  # type: ignore[arg-type]
    return Decision(feature_key, False, "limit_reached", upgrade_options=options, **common)  # type: ignore[arg-type]


def upgrade_options(
    catalog: Catalog, current: Plan | None, feature: Feature, needed: int
) -> list[dict[str, Any]]:
    """The cheapest plans (by monthly price, base and add-ons alike) that grant the feature
    with room for `needed` units; at most three."""
    out = []
    for p in catalog.plans:
        if current is not None and p.key == current.key:
            continue
        g = p.features.get(feature.key)
        if g is None or not g.enabled:
            continue
        if feature.type == "metered" and g.limit is not None and not g.soft and g.limit < needed:
            continue
        price = p.price("month") or p.price("year")
        per_month = (
            monthly(recurring_amount(p, price.interval, 1), price.interval) if price else Decimal(0)
        )
        out.append({"plan": p.key, "name": p.name or p.key, "kind": p.kind,
                    "monthly_price": str(per_month.quantize(Decimal("0.01"))), "limit": g.limit,
                    "_sort": per_month})  # fmt: skip
    out.sort(key=lambda o: (o["_sort"], o["plan"]))
    return [{k: v for k, v in o.items() if k != "_sort"} for o in out[:3]]


def crossed(limit: int | None, before: int, after: int, share: float = APPROACHING) -> list[str]:
    """The upgrade triggers a usage change from `before` to `after` fires: `$limit_approaching`
    when it first passes `share` of the limit, `$limit_reached` when it first reaches it."""
    if limit is None or limit <= 0 or after <= before:
        return []
    out = []
    mark = limit * share
    if before < mark <= after and after < limit:
        out.append("$limit_approaching")
    if before < limit <= after:
        out.append("$limit_reached")
    return out
