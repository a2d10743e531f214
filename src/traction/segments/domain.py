"""What a segment is: a saved audience, defined with the analytics' own filters (a person's
or their account's traits as they are now, and what they did or did not do in the last N
days), so "pro accounts that created no report in 14 days" means here what it means in an
insight. Membership is recomputed on a clock; who entered and who left since the last time
is a plain set difference, and each change becomes an event (`$segment_entered`,
`$segment_left`) that journeys, the catalog and every insight can use."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from traction.analytics.domain.specs import EventMatcher, PropertyFilter

Key = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]
ENTERED = "$segment_entered"
LEFT = "$segment_left"


class SegmentError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Performed(_Strict):
    """Did `event` between `at_least` and `at_most` times in the last `within_days` days
    (`at_most: 0`: did not do it)."""

    event: EventMatcher
    at_least: int = Field(1, ge=0, le=1_000_000)
    at_most: int | None = Field(None, ge=0, le=1_000_000)
    within_days: float = Field(30, gt=0, le=1830)

    @model_validator(mode="after")
    def _bounds(self) -> Performed:
        if self.at_most is not None and self.at_most < self.at_least:
            raise ValueError(f"at_most ({self.at_most}) is below at_least ({self.at_least})")
        if self.at_least == 0 and self.at_most is None:
            raise ValueError("at_least 0 with no at_most matches everyone: set at_most")
        return self


class Segment(_Strict):
    """All conditions hold (AND); at least one condition."""

    name: str = Field("", max_length=200)
    description: str = Field("", max_length=2000)
    traits: list[PropertyFilter] = Field(default_factory=list, max_length=20)
    performed: list[Performed] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _conditions(self) -> Segment:
        if not self.traits and not self.performed:
            raise ValueError("a segment needs at least one condition (traits or performed)")
        for i, f in enumerate(self.traits):
            if f.source == "event":
                raise ValueError(
                    f"traits[{i}].source: person or account (event properties go in performed)"
                )
        return self


def parse_segment(body: Any) -> Segment:
    if not isinstance(body, dict):
        raise SegmentError("body: a JSON object with traits and/or performed")
    try:
        return Segment.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        where = where.lstrip(".")
        raise SegmentError(f"{where}: {msg}" if where else msg) from None


def changes(before: set[str], now: set[str]) -> tuple[list[str], list[str]]:
    """(entered, left), each sorted so the events they become come in a stable order."""
    return sorted(now - before), sorted(before - now)
