"""What a plan costs: flat and per-seat prices, usage charges (standard, graduated, volume,
package), overage past soft limits, proration, and an invoice preview.

Rounding rules (docs/billing.md): every amount is computed exactly in `Decimal`; each invoice
line is rounded once, half up, to the currency's minor unit (cents; whole units for JPY and
the other zero-decimal currencies); the total is the sum of the rounded lines. A proration is
the exact difference of the two periods' prices times the exact fraction of the period left,
rounded once the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from traction.billing.domain.catalog import ZERO_DECIMAL, Catalog, Plan, Tier, UsageCharge


def round_money(amount: Decimal, currency: str) -> Decimal:
    unit = Decimal(1) if currency in ZERO_DECIMAL else Decimal("0.01")
    return amount.quantize(unit, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Line:
    description: str
    quantity: Decimal
    unit_price: Decimal | None
    amount: Decimal  # rounded

    def as_dict(self) -> dict[str, str | None]:
        return {
            "description": self.description,
            "quantity": str(self.quantity),
            "unit_price": None if self.unit_price is None else str(self.unit_price),
            "amount": str(self.amount),
        }


def _tier_bounds(tiers: list[Tier]) -> list[tuple[int, int | None, Tier]]:
    out, lower = [], 0
    for t in tiers:
        out.append((lower, t.up_to, t))
        lower = t.up_to or lower
    return out


def usage_lines(charge: UsageCharge, quantity: int, currency: str) -> list[Line]:
    """The lines one usage charge adds for `quantity` units used in the period."""
    billable = max(0, quantity - charge.free_units)
    q = Decimal(billable)
    name = charge.feature
    if charge.model == "standard":
        assert charge.unit_price is not None
        return [Line(f"{name}: {billable:,} units", q, charge.unit_price,
                     round_money(q * charge.unit_price, currency))]  # fmt: skip
    if charge.model == "package":
        assert charge.package_size and charge.package_price is not None
        packages = -(-billable // charge.package_size)
        return [Line(f"{name}: {packages:,} packages of {charge.package_size:,}", Decimal(packages),
                     charge.package_price, round_money(packages * charge.package_price, currency))]  # fmt: skip
    assert charge.tiers is not None
    bounds = _tier_bounds(charge.tiers)
    if charge.model == "volume":  # every unit at the price of the tier the total falls in
        for lower, upper, t in bounds:
            if upper is None or billable <= upper:
                amount = q * t.unit_price + (t.flat_price if billable else Decimal(0))
                label = f"{lower + 1:,}+" if upper is None else f"{lower + 1:,}-{upper:,}"
                return [Line(f"{name}: {billable:,} units (volume tier {label})", q, t.unit_price,
                             round_money(amount, currency))]  # fmt: skip
    lines = []  # graduated: each tier prices the units that fall in it
    for lower, upper, t in bounds:
        if billable <= lower:
            break
        n = (billable if upper is None else min(billable, upper)) - lower
        label = f"{lower + 1:,}+" if upper is None else f"{lower + 1:,}-{upper:,}"
        amount = Decimal(n) * t.unit_price + t.flat_price
        lines.append(
            Line(f"{name}: tier {label}", Decimal(n), t.unit_price, round_money(amount, currency))
        )
    return lines


def usage_amount(charge: UsageCharge, quantity: int, currency: str = "USD") -> Decimal:
    return sum((ln.amount for ln in usage_lines(charge, quantity, currency)), Decimal(0))


@dataclass(frozen=True)
class Invoice:
    currency: str
    lines: list[Line]

    @property
    def total(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), Decimal(0))

    def as_dict(self) -> dict[str, object]:
        return {"currency": self.currency, "lines": [ln.as_dict() for ln in self.lines],
                "total": str(self.total)}  # fmt: skip


def invoice_preview(
    catalog: Catalog,
    plan: Plan,
    interval: str,
    seats: int,
    usage: dict[str, int],
) -> Invoice:
    """The current period's invoice: flat, seats, each usage charge by tier, overage past soft
    limits. `usage`: each metered feature's usage in the period."""
    cur = catalog.currency
    price = plan.price(interval)  # type: ignore[arg-type]
    lines: list[Line] = []
    if price is not None:
        if price.flat:
            lines.append(Line(f"{plan.name or plan.key} ({interval}ly)", Decimal(1), price.flat,
                              round_money(price.flat, cur)))  # fmt: skip
        if price.per_seat:
            lines.append(Line(f"seats: {seats:,}", Decimal(seats), price.per_seat,
                              round_money(seats * price.per_seat, cur)))  # fmt: skip
        for charge in price.usage:
            lines += usage_lines(charge, usage.get(charge.feature, 0), cur)
    for key, grant in plan.features.items():
        if grant.soft and grant.overage_price is not None and grant.limit is not None:
            over = max(0, usage.get(key, 0) - grant.limit)
            if over:
                lines.append(Line(f"{key}: {over:,} over the {grant.limit:,} included", Decimal(over),
                                  grant.overage_price, round_money(over * grant.overage_price, cur)))  # fmt: skip
    return Invoice(cur, lines)


def recurring_amount(plan: Plan, interval: str, seats: int) -> Decimal:
    """The plan's fixed price for a period (flat + seats), exact: what MRR and proration use."""
    price = plan.price(interval)  # type: ignore[arg-type]
    if price is None:
        return Decimal(0)
    return price.flat + seats * price.per_seat


def monthly(amount: Decimal, interval: str) -> Decimal:
    """A period's amount as a monthly rate (a yearly price counts a twelfth a month)."""
    return amount / 12 if interval == "year" else amount


def proration(
    old: Decimal, new: Decimal, start: datetime, end: datetime, at: datetime, currency: str
) -> Decimal:
    """What an immediate change from `old` to `new` (each the price of a whole period) costs
    for the rest of the period [at, end); negative when it is a credit."""
    if not start <= at <= end or end <= start:
        raise ValueError("the change must fall within the period")
    left = Decimal((end - at).total_seconds()) / Decimal((end - start).total_seconds())
    return round_money((new - old) * left, currency)
