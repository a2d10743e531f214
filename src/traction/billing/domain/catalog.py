"""The plan catalog: one document with every feature, meter and plan (shaped like
OpenMeter's meters and Lago's charges), checked whole before anything is stored.

Money is `Decimal` throughout; a price written as a JSON number is read through its text, so
`0.1` is exactly one tenth.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KEY = r"^[a-z][a-z0-9_]{0,62}$"
Key = Annotated[str, Field(pattern=KEY, description="lower-case letters, digits and _")]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6)]
Reset = Literal["hour", "day", "week", "month", "year", "never", "billing_period"]
Aggregation = Literal["COUNT", "SUM", "MAX", "UNIQUE_COUNT", "LATEST"]
Interval = Literal["month", "year"]
SEATS = "seats"  # the built-in meter: unique members of the account
# Currencies with no minor unit (ISO 4217 exponent 0); everything else is rounded to cents.
ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF", "PYG", "RWF"})
_PATH = re.compile(r"^\$(\.[A-Za-z_$][A-Za-z0-9_$-]*)+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Meter(_Model):
    """Usage measured from events, as OpenMeter does: which event, which value, which filter,
    which aggregation."""

    key: Key
    event: str = Field(min_length=1, max_length=200)
    value_property: str | None = Field(
        None, description='a JSON path into the properties, e.g. "$.tokens" (not for COUNT)'
    )
    filters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="properties that must equal these values"
    )
    aggregation: Aggregation = "COUNT"

    @field_validator("value_property")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and not _PATH.match(v):
            raise ValueError('must be a JSON path like "$.tokens" or "$.usage.tokens"')
        return v

    @model_validator(mode="after")
    def _value_needed(self) -> Meter:
        if self.aggregation == "COUNT" and self.value_property:
            raise ValueError("COUNT counts events: drop value_property")
        if self.aggregation != "COUNT" and not self.value_property:
            raise ValueError(f"{self.aggregation} needs value_property")
        if self.event.startswith("$") and self.event not in ("$page", "$screen"):
            raise ValueError("meters count product events, not Traction's own ($…)")
        return self


class Feature(_Model):
    key: Key
    name: str = Field("", max_length=200)
    type: Literal["boolean", "config", "metered"]
    meter: str | None = Field(
        None, description=f'metered: the meter it counts (or "{SEATS}"); unset: used via consume'
    )
    reset: Reset = Field("billing_period", description="metered: when usage starts again from 0")

    @model_validator(mode="after")
    def _shape(self) -> Feature:
        if self.type != "metered" and (self.meter is not None or self.reset != "billing_period"):
            raise ValueError("only metered features have a meter and a reset period")
        return self


class Tier(_Model):
    """One row of a tier table: units above the previous row's `up_to`, up to this one's."""

    from_: int | None = Field(None, alias="from", ge=0, description="optional; checked for gaps")
    up_to: int | None = Field(None, gt=0, description="unset on the last row: no upper bound")
    unit_price: Money = Decimal(0)
    flat_price: Money = Decimal(0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class UsageCharge(_Model):
    """How a metered feature's usage is priced: Lago's standard, graduated, volume, package."""

    feature: Key
    model: Literal["standard", "graduated", "volume", "package"]
    unit_price: Money | None = None  # standard
    tiers: list[Tier] | None = Field(None, min_length=1, max_length=50)  # graduated, volume
    package_size: int | None = Field(None, ge=1)  # package
    package_price: Money | None = None  # package
    free_units: int = Field(0, ge=0, description="units included before the charge applies")

    @model_validator(mode="after")
    def _model_fields(self) -> UsageCharge:
        need = {
            "standard": ("unit_price",),
            "graduated": ("tiers",),
            "volume": ("tiers",),
            "package": ("package_size", "package_price"),
        }[self.model]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.model} charge needs {' and '.join(missing)}")
        extra = [
            f
            for f in ("unit_price", "tiers", "package_size", "package_price")
            if f not in need and getattr(self, f) is not None
        ]
        if extra:
            raise ValueError(f"a {self.model} charge does not take {', '.join(extra)}")
        if self.tiers:
            check_tiers(self.tiers)
        return self


def check_tiers(tiers: list[Tier]) -> None:
    """Ascending bounds, only the last one open, and no gap or overlap where `from` is given."""
    previous = 0
    for i, t in enumerate(tiers, 1):
        if t.from_ is not None and t.from_ != previous:
            kind = "gap" if t.from_ > previous else "overlap"
            raise ValueError(
                f"tiers: {kind} before tier {i}: it starts at {t.from_}, the one before ends at {previous}"
            )
        if t.up_to is None:
            if i != len(tiers):
                raise ValueError(f"tiers: only the last tier may be open-ended (tier {i} is)")
            return
        if t.up_to <= previous:
            raise ValueError(f"tiers: tier {i} ends at {t.up_to}, not above {previous}")
        previous = t.up_to
    raise ValueError("tiers: the last tier must be open-ended (leave out its up_to)")


class Grant(_Model):
    """What a plan gives of one feature."""

    enabled: bool = True
    value: str | int | float | bool | None = Field(None, description="config features: the value")
    limit: int | None = Field(None, ge=0, description="metered: the allowance; unset: unlimited")
    soft: bool = Field(
        False, description="metered: past the limit is allowed (and billed as overage)"
    )
    overage_price: Money | None = Field(None, description="soft limits: per unit past the limit")

    @model_validator(mode="after")
    def _overage(self) -> Grant:
        if self.overage_price is not None and not self.soft:
            raise ValueError("overage_price needs soft: true (a hard limit has no overage)")
        return self


class Price(_Model):
    interval: Interval = "month"
    flat: Money = Decimal(0)
    per_seat: Money = Decimal(0)
    usage: list[UsageCharge] = Field(default_factory=list, max_length=50)


class Plan(_Model):
    key: Key
    name: str = Field("", max_length=200)
    kind: Literal["free", "paid", "addon"] = "paid"
    trial_days: int | None = Field(None, ge=1, le=365, description="paid plans: a trial first")
    trial_end: Literal["convert", "downgrade", "cancel"] = Field(
        "downgrade",
        description="convert: becomes paid; downgrade: to the free plan; cancel: ends",
    )
    features: dict[str, Grant] = Field(default_factory=dict)
    prices: list[Price] = Field(default_factory=list, max_length=2)

    @model_validator(mode="after")
    def _prices(self) -> Plan:
        intervals = [p.interval for p in self.prices]
        if len(set(intervals)) != len(intervals):
            raise ValueError("one price per interval (month, year)")
        if self.kind == "free" and any(p.flat or p.per_seat or p.usage for p in self.prices):
            raise ValueError("a free plan has no prices")
        if self.kind != "free" and not self.prices:
            raise ValueError(f"a {self.kind} plan needs a price")
        if self.trial_days and self.kind != "paid":
            raise ValueError("only paid plans have trials")
        return self

    def price(self, interval: Interval = "month") -> Price | None:
        return next((p for p in self.prices if p.interval == interval), None)


class Catalog(_Model):
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217")
    features: list[Feature] = Field(default_factory=list, max_length=500)
    meters: list[Meter] = Field(default_factory=list, max_length=500)
    plans: list[Plan] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _references(self) -> Catalog:
        for what, items in (
            ("feature", self.features),
            ("meter", self.meters),
            ("plan", self.plans),
        ):
            seen: set[str] = set()
            for item in items:
                if item.key in seen:
                    raise ValueError(f"{what} {item.key!r} is defined twice")
                seen.add(item.key)
        features = {f.key: f for f in self.features}
        meters = {m.key for m in self.meters} | {SEATS}
        for f in self.features:
            if f.meter is not None and f.meter not in meters:
                raise ValueError(f"feature {f.key!r}: no meter {f.meter!r}")
        if sum(p.kind == "free" for p in self.plans) > 1:
            raise ValueError("at most one free plan (where trials and downgrades land)")
        for p in self.plans:
            for fk, g in p.features.items():
                granted = features.get(fk)
                if granted is None:
                    raise ValueError(f"plan {p.key!r}: no feature {fk!r}")
                if granted.type != "metered" and (g.limit is not None or g.soft or g.overage_price):
                    raise ValueError(
                        f"plan {p.key!r}, feature {fk!r}: only metered features have limits"
                    )
                if granted.type != "config" and g.value is not None:
                    raise ValueError(
                        f"plan {p.key!r}, feature {fk!r}: only config features have a value"
                    )
            for price in p.prices:
                for c in price.usage:
                    charged = features.get(c.feature)
                    if charged is None or charged.type != "metered":
                        raise ValueError(
                            f"plan {p.key!r}: usage charge on {c.feature!r}, which is not a metered feature"
                        )
        return self

    def feature(self, key: str) -> Feature | None:
        return next((f for f in self.features if f.key == key), None)

    def plan(self, key: str) -> Plan | None:
        return next((p for p in self.plans if p.key == key), None)

    def meter(self, key: str) -> Meter | None:
        return next((m for m in self.meters if m.key == key), None)

    @property
    def free_plan(self) -> Plan | None:
        return next((p for p in self.plans if p.kind == "free"), None)
