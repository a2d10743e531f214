"""What a journey is: a trigger, settings (entry policy, goal, holdout, quiet hours) and a
graph of steps, checked whole before anything is saved (unknown step types, references to
steps that do not exist, cycles, bad conditions and templates answer with their place).

Steps run in list order unless one says where to go (`next`, a branch's `then`/`else`, a
split's paths, a wait's `on_event`/`on_timeout`). The graph must be acyclic: a journey ends.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from traction.analytics.domain.specs import EventMatcher, PropertyFilter

Key = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]
StepId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
UPGRADE_TRIGGERS = ("$limit_reached", "$limit_approaching", "$feature_locked")


class JourneyError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Inactive(_Strict):
    event: str = Field(min_length=1, max_length=200, description="the activity that stopped")
    days: float = Field(gt=0, le=365)


class SegmentChange(_Strict):
    key: Key = Field(description="the segment (see docs/segments.md)")
    on: Literal["enter", "leave"] = "enter"


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = Weekday.__args__  # type: ignore[attr-defined]


class Schedule(_Strict):
    """At `at` (in `timezone`) every day, every week on `weekday`, or every month on `day`,
    the members of `segment` enter (times after the journey was last saved)."""

    every: Literal["day", "week", "month"]
    at: str = Field("09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM")
    weekday: Weekday = "monday"
    day: int = Field(1, ge=1, le=28, description="every month: the day of the month")
    timezone: str = Field("UTC", max_length=64)
    segment: Key

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (an IANA name: Europe/Paris)") from None
        return name


class Trigger(_Strict):
    """One of: an `event` (with property filters; `occurrence` n: only its nth time for the
    person, a milestone; upgrade triggers are billing's $limit_reached, $limit_approaching,
    $feature_locked); `identify`: a trait change (identify calls whose traits match the
    filters); `segment`: entering or leaving a segment; `inactive`: no `event` for `days`
    (checked by a periodic scan); `schedule`: a segment's members at set times."""

    event: str | None = Field(None, min_length=1, max_length=200)
    identify: bool = False
    segment: SegmentChange | None = None
    filters: list[PropertyFilter] = Field(default_factory=list, max_length=20)
    occurrence: int | None = Field(None, ge=1, le=1_000_000)
    inactive: Inactive | None = None
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        kinds = [k for k, on in (("event", self.event is not None), ("identify", self.identify),
                                 ("segment", self.segment is not None),
                                 ("inactive", self.inactive is not None),
                                 ("schedule", self.schedule is not None)) if on]  # fmt: skip
        if len(kinds) != 1:
            raise ValueError(
                "a trigger is one of: event, identify (a trait change), segment, inactive, schedule"
            )
        if self.occurrence is not None and self.event is None:
            raise ValueError("occurrence: only for an event trigger")
        return self

    @property
    def event_name(self) -> str | None:
        """The event that starts the journey, if one does (a segment change is an event)."""
        if self.segment is not None:
            return SEGMENT_EVENTS[self.segment.on]
        return self.event

    @property
    def event_filters(self) -> list[PropertyFilter]:
        if self.segment is not None:
            return [PropertyFilter(property="segment", value=self.segment.key), *self.filters]
        return self.filters

    @property
    def label(self) -> str:
        if self.inactive is not None:
            return f"no {self.inactive.event} for {self.inactive.days:g} days"
        if self.segment is not None:
            return f"{self.segment.on}s segment {self.segment.key}"
        if self.schedule is not None:
            sc = self.schedule
            when = {"day": "every day", "week": f"every {sc.weekday}",
                    "month": f"monthly on day {sc.day}"}[sc.every]  # fmt: skip
            return f"{when} at {sc.at} {sc.timezone}: segment {sc.segment}"
        return "trait change" if self.identify else str(self.event)


SEGMENT_EVENTS = {"enter": "$segment_entered", "leave": "$segment_left"}


class Entry(_Strict):
    policy: Literal["once", "again"] = "once"
    after_days: float = Field(30, gt=0, le=3650, description="for `again`: days between entries")


class Goal(_Strict):
    event: EventMatcher
    within_days: float = Field(14, gt=0, le=365)


class QuietHours(_Strict):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, person's zone")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class Email(_Strict):
    subject: str = Field(min_length=1, max_length=500)
    html: str = Field("", max_length=200_000)
    text: str = Field(min_length=1, max_length=200_000)


class Task(_Strict):
    title: str = Field(min_length=1, max_length=200)
    event: str = Field(min_length=1, max_length=200, description="the event that completes it")


class TourStep(_Strict):
    selector: str = Field(min_length=1, max_length=500)
    title: str = Field(min_length=1, max_length=200)
    body: str = Field("", max_length=2000)


class InApp(_Strict):
    """Shown by the `traction.js` snippet: a banner, a modal, a tooltip at `selector`, an
    onboarding checklist (tasks ticked by events; `$checklist_completed` when all are done)
    or a product tour (tooltips in sequence)."""

    kind: Literal["banner", "modal", "tooltip", "checklist", "tour"] = "banner"
    title: str = Field(max_length=200)
    body: str = Field("", max_length=4000)
    cta_text: str = Field("", max_length=100)
    cta_url: str = Field("", max_length=2000)
    selector: str = Field("", max_length=500, description="tooltip: the element it points at")
    expires_days: float = Field(14, gt=0, le=365)
    tasks: list[Task] = Field(default_factory=list, max_length=20)
    steps: list[TourStep] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _parts(self) -> InApp:
        if self.kind == "checklist" and not self.tasks:
            raise ValueError("a checklist needs its tasks")
        if self.kind == "tour" and not self.steps:
            raise ValueError("a tour needs its steps")
        if self.kind == "tooltip" and not self.selector:
            raise ValueError("a tooltip needs the selector of what it points at")
        return self


class _Step(_Strict):
    id: StepId
    next: StepId | None = Field(None, description="where to go after (default: the next step)")


class SendEmail(_Step):
    type: Literal["email"]
    email: Email
    transactional: bool = Field(False, description="exempt from frequency caps and quiet hours")


class ShowInApp(_Step):
    type: Literal["inapp"]
    inapp: InApp


class CallWebhook(_Step):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", max_length=2000)
    format: Literal["json", "slack"] = "json"
    text: str = Field("", max_length=4000, description="slack: the message (a template)")


class Wait(_Step):
    type: Literal["wait"]
    hours: float | None = Field(None, gt=0, le=24 * 365)
    until_hour: int | None = Field(
        None, ge=0, le=23, description="the next time it is HH:00 for the person"
    )
    until_event: EventMatcher | None = None
    timeout_hours: float = Field(72, gt=0, le=24 * 365)
    on_event: StepId | None = None
    on_timeout: StepId | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Wait:
        kinds = [k for k in ("hours", "until_hour", "until_event") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a wait needs exactly one of hours, until_hour, until_event")
        return self


class Branch(_Step):
    type: Literal["branch"]
    condition: list[PropertyFilter] = Field(min_length=1, max_length=20)
    then: StepId
    otherwise: StepId = Field(alias="else")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Path(_Strict):
    weight: float = Field(gt=0, le=1)
    next: StepId


class Split(_Step):
    type: Literal["split"]
    paths: list[Path] = Field(min_length=2, max_length=10)

    @model_validator(mode="after")
    def _weights(self) -> Split:
        total = sum(p.weight for p in self.paths)
        if abs(total - 1) > 0.001:
            raise ValueError(f"paths: weights must sum to 1 (they sum to {total:g})")
        return self


class SetTrait(_Step):
    type: Literal["set_trait"]
    trait: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
    value: str | int | float | bool | None


class Exit(_Step):
    type: Literal["exit"]


Step = Annotated[
    SendEmail | ShowInApp | CallWebhook | Wait | Branch | Split | SetTrait | Exit,
    Field(discriminator="type"),
]
MESSAGE_STEPS = ("email", "inapp", "webhook")


class Journey(_Strict):
    name: str = Field("", max_length=200)
    enabled: bool = True
    trigger: Trigger
    entry: Entry = Field(default_factory=Entry)
    goal: Goal | None = None
    holdout: float = Field(0.0, ge=0, le=0.5, description="share of entrants who get nothing")
    quiet_hours: QuietHours | None = None
    steps: list[Step] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _graph(self) -> Journey:
        ids = [s.id for s in self.steps]
        seen: set[str] = set()
        for i, step_id in enumerate(ids):
            if step_id in seen:
                raise ValueError(f"steps[{i}].id: {step_id!r} is used twice")
            seen.add(step_id)
        for i, s in enumerate(self.steps):
            for field, target in _targets(s):
                if target not in seen:
                    raise ValueError(f"steps[{i}].{field}: no step {target!r}")
        cycle = _cycle(self)
        if cycle:
            raise ValueError(f"steps: a cycle ({' → '.join(cycle)}); a journey must end")
        return self

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def after(self, step_id: str) -> str | None:
        """Where a step goes when it does not say: the next in the list (None: the end)."""
        i = next(i for i, s in enumerate(self.steps) if s.id == step_id)
        s = self.steps[i]
        if s.next is not None:
            return s.next
        return self.steps[i + 1].id if i + 1 < len(self.steps) else None


def _targets(s: Any) -> list[tuple[str, str]]:
    out = [("next", s.next)] if s.next else []
    if isinstance(s, Branch):
        out += [("then", s.then), ("else", s.otherwise)]
    if isinstance(s, Split):
        out += [(f"paths[{j}].next", p.next) for j, p in enumerate(s.paths)]
    if isinstance(s, Wait):
        out += [(k, v) for k, v in (("on_event", s.on_event), ("on_timeout", s.on_timeout)) if v]
    return out


def successors(j: Journey, s: Any) -> list[str]:
    if isinstance(s, Exit):
        return []
    if isinstance(s, Branch):
        return [s.then, s.otherwise]
    if isinstance(s, Split):
        return [p.next for p in s.paths]
    nxt = j.after(s.id)
    if isinstance(s, Wait) and s.until_event is not None:
        return [x for x in (s.on_event or nxt, s.on_timeout or nxt) if x]
    return [nxt] if nxt else []


def _cycle(j: Journey) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in successors(j, j.step(node)):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for s in j.steps:
        if s.id not in state:
            found = visit(s.id)
            if found:
                return found
    return None


def parse_journey(body: Any) -> Journey:
    if not isinstance(body, dict):
        raise JourneyError("body: a JSON object with trigger and steps")
    try:
        return Journey.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p in _STEP_TAGS)]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            msg = f"unknown step type; one of {', '.join(sorted(_STEP_TAGS))}"
        raise JourneyError(f"{where}: {msg}" if where else msg) from None


_STEP_TAGS = {"email", "inapp", "webhook", "wait", "branch", "split", "set_trait", "exit"}
_HHMM = re.compile(r"^(\d\d):(\d\d)$")


def minutes(hhmm: str) -> int:
    m = _HHMM.match(hhmm)
    assert m is not None
    return int(m.group(1)) * 60 + int(m.group(2))
