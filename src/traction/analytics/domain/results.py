"""Result shapes and the arithmetic on them: pure, so the API, CLI and pages agree."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FunnelStep:
    event: str
    entered: int
    conversion_from_previous: float | None  # entered / previous step's entered
    conversion_from_start: float | None
    dropped: int  # reached this step and went no further
    drop_off_rate: float | None
    median_seconds_from_previous: float | None
    mean_seconds_from_previous: float | None


@dataclass(frozen=True)
class FunnelResult:
    steps: list[FunnelStep]

    @property
    def overall_conversion(self) -> float | None:
        return self.steps[-1].conversion_from_start

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": [asdict(s) for s in self.steps],
            "overall_conversion": self.overall_conversion,
        }


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def funnel_result(events: list[str], row: dict[str, Any]) -> FunnelResult:
    """`row` is the funnel query's single row: entered_k, median_s_k, mean_s_k."""
    entered = [int(row[f"entered_{k}"] or 0) for k in range(len(events))]
    steps = []
    for k, event in enumerate(events):
        after = entered[k + 1] if k + 1 < len(entered) else entered[k]
        dropped = entered[k] - after
        steps.append(
            FunnelStep(
                event=event,
                entered=entered[k],
                conversion_from_previous=_ratio(entered[k], entered[k - 1]) if k else None,
                conversion_from_start=_ratio(entered[k], entered[0]) if k else None,
                dropped=dropped,
                drop_off_rate=_ratio(dropped, entered[k]),
                median_seconds_from_previous=_num(row.get(f"median_s_{k}")),
                mean_seconds_from_previous=_num(row.get(f"mean_s_{k}")),
            )
        )
    return FunnelResult(steps)


def _num(v: Any) -> float | None:
    return None if v is None else float(v)
