"""The journey engine on the StateStore: people enter from committed events (a reactor), and
workers move due runs through their steps.

Durability: a run's position (step, next_at) and the deliveries its steps create change in
one transaction, so a step's effect is recorded once (the delivery's idempotency key is
run x step, unique) and a crash before the commit redoes the step, never half of it. Several
workers share the due runs through leases (PostgreSQL skips rows another worker holds; SQLite
has one writer); a worker that dies leaves its leases to expire.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from traction.engage.domain import timing
from traction.engage.domain.conditions import compile_start, holds, matches, triggers
from traction.engage.domain.journeys import (
    MESSAGE_STEPS,
    Branch,
    CallWebhook,
    Exit,
    Journey,
    SendEmail,
    SetTrait,
    ShowInApp,
    Split,
    Wait,
)
from traction.engage.domain.templates import TemplateError, render
from traction.engage.models import Delivery, JourneyRow, Run, Suppression
from traction.identity.models import Account, AccountMembership, Person
from traction.identity.queries import event_identity as _who
from traction.store.events import EventKinds
from traction.store.state import StateStore, utcnow

log = logging.getLogger("traction.engage")
ENTERED = "$journey_entered"
SPLIT = "$journey_split"
Emit = Callable[[str, list[dict[str, Any]]], None]
Occurrences = Callable[[str, str, str, int], int]  # ws, person, event, up to seq -> count
# ws, event, since, until -> (person, their last such event) for those whose last is in range
LastSeen = Callable[[str, str, datetime, datetime], list[tuple[str, datetime]]]


# statements with expanding parameters: compiled once, not per list of ids
_LIVE = (select(Run.person_id).distinct()
         .where(Run.workspace_id == bindparam("ws"), Run.status == "active",
                Run.person_id.in_(bindparam("ids", expanding=True))))  # fmt: skip
_MOVED = select(Person.id, Person.merged_into).where(
    Person.id.in_(bindparam("ids", expanding=True)), Person.merged_into.is_not(None)
)
LOOKUP = object()  # `_enter`: the caller did not read the person's latest run
# trigger name -> compiled start checks, name -> journeys that care (triggers, goals, awaited
# events), goal or awaited name -> journeys, identify journeys, their compiled checks
_Index = tuple[
    dict[str, list[Callable[[str | None, Mapping[str, Any]], bool]]],
    dict[str, list[tuple[str, Journey]]],
    dict[str, list[tuple[str, Journey]]],
    list[tuple[str, Journey]],
    list[Callable[[str | None, Mapping[str, Any]], bool]],
]


@dataclass(frozen=True)
class Limits:
    cap_per_day: int = 3
    cap_per_week: int = 10
    lease: timedelta = timedelta(seconds=60)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class RunEngine:
    def __init__(self, state: StateStore, emit: Emit, occurrences: Occurrences | None = None,
                 limits: Limits = Limits(), links: Any = None,
                 last_seen: LastSeen | None = None,
                 audience: Callable[[str, str], list[str]] | None = None) -> None:  # fmt: skip
        """`last_seen`: the inactivity scan's query on the log; `audience(ws, segment)`: a
        segment's members (schedules)."""
        self.last_seen = last_seen
        self.audience = audience
        self._fired: set[tuple[str, str, int]] = set()
        self.state = state
        self.emit = emit
        self.occurrences = occurrences
        self.limits = limits
        self.links = links  # engage.links.Links: unsubscribe, open and click URLs
        self._journeys: dict[str, tuple[int, list[tuple[str, Journey]]]] = {}
        self._checked: dict[str, float] = {}
        self._indexes: dict[str, tuple[list[tuple[str, Journey]], _Index | None]] = {}
        # how events name a person, for the `$journey_entered` events of one round of entries
        self._names: dict[tuple[str, str], dict[str, str]] = {}

    def changed(self, workspace_id: str) -> None:
        """This process changed the workspace's journeys: the next read sees it at once."""
        self._checked.pop(workspace_id, None)

    # -- journeys, cached per workspace until one changes -----------------------------------

    FRESH_SECONDS = 1.0  # how long a change made by another process may take to show

    def journeys(self, workspace_id: str) -> list[tuple[str, Journey]]:
        hit = self._journeys.get(workspace_id)
        if (
            hit is not None
            and time.monotonic() - self._checked.get(workspace_id, 0.0) < self.FRESH_SECONDS
        ):
            return hit[1]
        self._checked[workspace_id] = time.monotonic()
        with self.state.session() as s:
            stamp = s.scalar(select(func.coalesce(func.sum(JourneyRow.version), 0) * 1000
                                    + func.count(JourneyRow.id))
                             .where(JourneyRow.workspace_id == workspace_id)) or 0  # fmt: skip
            hit = self._journeys.get(workspace_id)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            rows = s.scalars(select(JourneyRow).where(JourneyRow.workspace_id == workspace_id))
            loaded = [(r.key, Journey.model_validate(r.document)) for r in rows]
        self._journeys[workspace_id] = (int(stamp), loaded)
        return loaded

    # -- entering, goals and awaited events (the reactor) ------------------------------------

    def on_events(self, batch: Sequence[Mapping[str, Any]]) -> int:
        """Idempotent by the trigger's seq: a redelivered batch enters nobody twice. Journeys
        are indexed by the event names they care about, and an event is checked against its
        triggers' event filters before any query, so the log's common events cost a lookup."""
        entered = 0
        self._names.clear()
        by_ws: dict[str, list[Mapping[str, Any]]] = {}
        for ev in batch:
            by_ws.setdefault(str(ev["workspace_id"]), []).append(ev)
        for ws, events in by_ws.items():
            index = self._index(ws)
            if index is None:
                continue
            starts, cares, waits, on_identify, identify_starts = index
            candidates = []
            for ev in events:
                name, kind = ev.get("name"), ev.get("type")
                trig = (starts.get(name, []) if name else []) + (
                    identify_starts if kind == "identify" else []
                )
                if not ev.get("person_id") or (not trig and (not name or name not in waits)):
                    continue
                props = _props(ev) if trig else {}
                if any(start(kind, props) for start in trig):  # each distinct trigger once
                    relevant = cares.get(name, []) if name else []
                    candidates.append(
                        (ev, True, relevant + on_identify if kind == "identify" else relevant)
                    )
                elif name in waits:  # a goal or an awaited event: for active runs only
                    candidates.append((ev, False, waits[name]))
            # a goal or an awaited event only matters to people with an active run: one query
            # finds them, so the log's common events cost no query each
            waiting = self._active(
                ws, [str(ev["person_id"]) for ev, starting, _ in candidates if not starting]
            )
            out: list[dict[str, Any]] = []
            with self.state.session() as s:  # one transaction for the batch (idempotent by seq)
                pending: dict[str, list[Run]] = {}  # entries of this batch, flushed together
                for ev, starting, relevant in candidates:
                    who = str(ev["person_id"])
                    if starting or who in waiting:
                        n = self._on_event(s, ws, relevant, ev, out, pending)
                        if n:  # entered now: their later events in this batch count too
                            waiting.add(who)
                        entered += n
            if out:  # after the commit: an entry that rolled back logs nothing
                self.emit(ws, out)
        return entered

    def wanted(self) -> EventKinds:
        """The events `on_events` can act on, in any workspace: the names journeys start on,
        end on (goals) or wait for, and identify calls if a journey starts on one."""
        with self.state.session() as s:
            spaces = s.scalars(select(JourneyRow.workspace_id).distinct()).all()
        kinds = EventKinds()
        for ws in spaces:
            index = self._index(ws)
            if index is not None:
                starts, _cares, waits, _on_identify, identify_starts = index
                kinds |= EventKinds(
                    frozenset(starts) | frozenset(waits),
                    frozenset({"identify"} if identify_starts else ()),
                )
        return kinds

    def _index(self, ws: str) -> _Index | None:
        """(trigger name -> its distinct triggers' compiled checks, any name a journey cares
        about -> journeys, goal and awaited names -> journeys, identify journeys, their
        compiled checks), or None when the workspace has no enabled journey. Built once per
        version of the journeys."""
        loaded = self.journeys(ws)
        hit = self._indexes.get(ws)
        if hit is not None and hit[0] is loaded:
            return hit[1]
        journeys = [(k, j) for k, j in loaded if j.enabled]
        index: _Index | None = None
        if journeys:
            triggers: dict[str, list[Any]] = {}
            cares: dict[str, list[tuple[str, Journey]]] = {}
            waits: dict[str, list[tuple[str, Journey]]] = {}
            for kj in journeys:
                j = kj[1]
                names = {
                    s.until_event.event
                    for s in j.steps
                    if isinstance(s, Wait) and s.until_event is not None
                }
                if j.goal is not None:
                    names.add(j.goal.event.event)
                for n in names:
                    waits.setdefault(n, []).append(kj)
                start = j.trigger.event_name
                if start:
                    triggers.setdefault(start, []).append(j.trigger)
                    names.add(start)
                for n in names:
                    cares.setdefault(n, []).append(kj)
            starts = {n: [compile_start(t) for t in _distinct(ts)] for n, ts in triggers.items()}
            on_identify = [kj for kj in journeys if kj[1].trigger.identify]
            identify_starts = [
                compile_start(t) for t in _distinct([j.trigger for _, j in on_identify])
            ]
            index = (starts, cares, waits, on_identify, identify_starts)
        self._indexes[ws] = (loaded, index)
        return index

    def _active(self, ws: str, raw_ids: list[str]) -> set[str]:
        """Of these person ids (as events carry them), those whose person (merges followed
        one step) has an active run. Most events carry their person's own id: one query
        finds those; the ids left are looked up as merged-away ones (usually none are)."""
        if not raw_ids:
            return set()
        out: set[str] = set()
        ids = sorted(set(raw_ids))
        with self.state.session() as s:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                found = set(s.scalars(_LIVE, {"ws": ws, "ids": chunk}))
                out |= found
                rest = [p for p in chunk if p not in found]
                moved = dict(s.execute(_MOVED, {"ids": rest}).all()) if rest else {}
                if moved:
                    alive = set(s.scalars(_LIVE, {"ws": ws, "ids": list(set(moved.values()))}))
                    out |= {p for p, to in moved.items() if to in alive}
        return out

    def _on_event(self, s: Session, ws: str, journeys: list[tuple[str, Journey]],
                  ev: Mapping[str, Any], out: list[dict[str, Any]],
                  pending: dict[str, list[Run]]) -> int:  # fmt: skip
        """`pending`: the batch's new runs by person, not flushed yet (one INSERT for the
        batch at its commit instead of a flush per event): read alongside the stored ones."""
        props = _props(ev)
        name, ts, seq = ev.get("name"), _naive(ev["timestamp"]), int(ev["seq"])
        entered = 0
        with s.no_autoflush:
            row = _person(s, str(ev["person_id"]))
            pid = row.id if row is not None else str(ev["person_id"])
            stored = list(s.scalars(select(Run).where(Run.workspace_id == ws, Run.person_id == pid)
                                    .order_by(Run.entry_no)))  # fmt: skip
        person = dict(row.traits or {}) if row is not None else {}
        active: dict[str, list[Run]] = {}  # the person's active runs, by journey, and each
        latest: dict[str, Run] = {}  # journey's latest entry: one query
        for run in stored + pending.get(pid, []):
            latest[run.journey] = run
            if run.status == "active":
                active.setdefault(run.journey, []).append(run)
        for key, j in journeys:
            for run in active.get(key, []):
                if (j.goal is not None and matches(j.goal.event, name, props, person)
                        and run.entered_at <= ts <= run.entered_at + timedelta(days=j.goal.within_days)):  # fmt: skip
                    run.status, run.ended_at, run.exit_reason = (
                        "goal",
                        ts,
                        f"goal {j.goal.event.event}",
                    )
                    run.next_at = None
                    continue
                step = j.step(run.step) if run.step else None
                if (isinstance(step, Wait) and step.until_event is not None and run.event_seen_at is None
                        and run.step_started_at <= ts and matches(step.until_event, name, props, person)):  # fmt: skip
                    run.event_seen_at, run.next_at = ts, ts
            if not triggers(j.trigger, ev.get("type"), name, props, person):
                continue
            if (
                j.trigger.occurrence is not None
                and self.occurrences is not None
                and self.occurrences(ws, str(ev["person_id"]), str(name), seq)
                != j.trigger.occurrence
            ):
                continue
            new = self._enter(s, ws, key, j, pid, ts, seq, props, out, latest.get(key))
            if new is not None:
                pending.setdefault(pid, []).append(new)
                entered += 1
        return entered

    def _enter(self, s: Session, ws: str, key: str, j: Journey, pid: str, ts: datetime,
               seq: int, props: dict[str, Any], out: list[dict[str, Any]],
               last: Run | object | None = LOOKUP) -> Run | None:  # fmt: skip
        """`last`: the person's latest run of this journey if the caller read it (None: they
        have none), else looked up here."""
        if last is LOOKUP:
            last = s.scalars(select(Run).where(Run.workspace_id == ws, Run.journey == key,
                                               Run.person_id == pid).order_by(Run.entry_no.desc())).first()  # fmt: skip
        if isinstance(last, Run):
            if last.trigger_seq == seq:
                return None  # this very event entered them already (a redelivered batch)
            if j.entry.policy == "once" or last.status == "active":
                return None
            if ts - last.entered_at < timedelta(days=j.entry.after_days):
                return None
        who = self._identity(s, ws, pid)
        arm = "holdout" if timing.in_holdout(key, _unit(who), j.holdout) else "treatment"
        run = Run(workspace_id=ws, journey=key, person_id=pid,
                  entry_no=last.entry_no + 1 if isinstance(last, Run) else 1,
                  arm=arm, status="active", step=j.steps[0].id, step_started_at=ts, next_at=ts,
                  entered_at=ts, trigger_seq=seq, context={"event": props}, exit_reason="")  # fmt: skip
        s.add(run)  # (flushed with the batch, or by the next query that needs it)
        out.append({"type": "track", "event": ENTERED, **who,
                    "messageId": f"journey-entered:{ws}:{key}:{pid}:{run.entry_no}",
                    "timestamp": ts.isoformat() + "Z",
                    "properties": {"journey": key, "journey_name": j.name or key, "arm": arm,
                                   "entry": run.entry_no}})  # fmt: skip
        return run

    def _identity(self, s: Session, ws: str, pid: str) -> dict[str, str]:
        """How the person's events name them (their user id, else an anonymous id): the id
        of the events written about them, and the unit holdouts and splits hash (stable
        across rebuilds, unlike the internal person id). Cached for a round of entries; any
        of a person's ids resolves to them, so a stale one is harmless."""
        who = self._names.get((ws, pid))
        if who is None:
            if len(self._names) > 10_000:
                self._names.clear()
            with s.no_autoflush:
                who = self._names[(ws, pid)] = _who(s, ws, pid)
        return who

    def scan_inactive(self, now: datetime | None = None, lookback_days: float = 7) -> int:
        """Enters people whose last `event` is more than `days` old (and not older than the
        lookback: long-gone people are not "just inactive"). Idempotent: the entry is keyed
        by that last activity, so a person enters once per lapse. Run by the maintenance
        loop; needs the event log, given as `last_seen`."""
        if self.last_seen is None:
            return 0
        now = now or utcnow()
        with self.state.session() as s:
            spaces = list(s.scalars(select(JourneyRow.workspace_id).distinct()))
        entered = 0
        for ws in spaces:
            for key, j in self.journeys(ws):
                if not j.enabled or j.trigger.inactive is None:
                    continue
                quiet = timedelta(days=j.trigger.inactive.days)
                since = now - quiet - timedelta(days=lookback_days)
                rows = self.last_seen(ws, j.trigger.inactive.event, since, now - quiet)
                out: list[dict[str, Any]] = []
                with self.state.session() as s:
                    for raw, last in rows:
                        pid = _survivor(s, raw)
                        seq = _moment_key(last)  # the lapse's key (not a log seq)
                        ctx = {"last_seen": last.isoformat() + "Z"}
                        if self._enter(s, ws, key, j, pid, last + quiet, seq, ctx, out):
                            entered += 1
                if out:
                    self.emit(ws, out)
        return entered

    def scan_schedules(self, now: datetime | None = None) -> int:
        """Enters the members of each scheduled journey's segment at its latest time (if it
        came after the journey was saved). Idempotent: the entries are keyed by that time,
        and a firing that entered anyone is not looked at again."""
        if self.audience is None:
            return 0
        now = now or utcnow()
        with self.state.session() as s:
            saved = list(
                s.execute(select(JourneyRow.workspace_id, JourneyRow.key, JourneyRow.updated_at))
            )
        entered = 0
        for ws, key, updated_at in saved:
            j = dict(self.journeys(ws)).get(key)
            if j is None or not j.enabled or j.trigger.schedule is None:
                continue
            at = timing.last_occurrence(j.trigger.schedule, now)
            seq = _moment_key(at)
            if at < updated_at or (ws, key, seq) in self._fired:
                continue
            out: list[dict[str, Any]] = []
            with self.state.session() as s:
                if s.scalar(select(Run.id).where(Run.workspace_id == ws, Run.journey == key,
                                                 Run.trigger_seq == seq).limit(1)) is None:  # fmt: skip
                    for pid in self.audience(ws, j.trigger.schedule.segment):
                        ctx = {"schedule": at.isoformat() + "Z"}
                        if self._enter(s, ws, key, j, _survivor(s, pid), at, seq, ctx, out):
                            entered += 1
            self._fired.add((ws, key, seq))
            if out:
                self.emit(ws, out)
        return entered

    # -- moving runs ------------------------------------------------------------------------

    def tick(self, now: datetime | None = None, limit: int = 500, owner: str | None = None) -> int:
        """Claims due runs and moves each as far as it can go now, in one transaction (a
        savepoint per run: one that fails is left for the next round, the others go on).
        A crash before the commit redoes the lot; nothing is half-done. Returns how many."""
        now = now or utcnow()
        owner = owner or worker_id()
        out: dict[str, list[dict[str, Any]]] = {}
        until = now + self.limits.lease
        with self.state.session() as s:
            # the claim is one UPDATE, so the round holds the write lock from its first
            # statement (SQLite cannot upgrade a reading transaction once another has written)
            due = (select(Run.id).where(Run.status == "active", Run.next_at <= now,
                                        or_(Run.lease_until.is_(None), Run.lease_until < now))
                   .order_by(Run.next_at).limit(limit).with_for_update(skip_locked=True))  # fmt: skip
            s.execute(update(Run).where(Run.id.in_(due.scalar_subquery()))
                      .values(lease_owner=owner, lease_until=until)
                      .execution_options(synchronize_session=False))  # fmt: skip
            claimed = list(s.scalars(select(Run).where(Run.lease_owner == owner, Run.lease_until == until,
                                                       Run.status == "active").order_by(Run.next_at)))  # fmt: skip
            for run in claimed:
                mine: list[dict[str, Any]] = []
                try:
                    with s.begin_nested():
                        self._advance(s, run, now, mine)
                except Exception:  # this run only: retried once its lease runs out
                    log.exception("journey step failed; retried later", extra={"run": run.id})
                    continue
                out.setdefault(run.workspace_id, []).extend(mine)
        for ws, messages in out.items():  # after the commit
            if messages:
                self.emit(ws, messages)
        return len(claimed)

    def _advance(self, s: Session, run: Run, now: datetime, out: list[dict[str, Any]]) -> None:
        j = dict(self.journeys(run.workspace_id)).get(run.journey)
        if j is None or not j.enabled:
            _end(run, now, "exited", "the journey was deleted or disabled")
            return
        person = _traits(s, Person, run.person_id)
        for _ in range(len(j.steps) + 1):
            if run.step is None:
                _end(run, now, "completed", "")
                break
            if not self._step(s, run, j, person, now, out):
                break
        run.lease_owner, run.lease_until = None, None

    def _step(self, s: Session, run: Run, j: Journey, person: dict[str, Any], now: datetime,
              out: list[dict[str, Any]]) -> bool:  # fmt: skip
        """Does the run's current step if it is due; True if the run moved on."""
        step = j.step(run.step or "")
        tz = timing.zone(person.get("timezone"))
        if isinstance(step, Wait):
            if step.hours is not None:
                due = run.step_started_at + timedelta(hours=step.hours)
            elif step.until_hour is not None:
                due = timing.next_hour(run.step_started_at, step.until_hour, tz)
            else:
                if run.event_seen_at is not None:
                    return _go(run, step.on_event or j.after(step.id), run.event_seen_at)
                due = run.step_started_at + timedelta(hours=step.timeout_hours)
                if now >= due:
                    return _go(run, step.on_timeout or j.after(step.id), due)
            if now < due:
                run.next_at = due
                return False
            return _go(run, j.after(step.id), due)
        if isinstance(step, Branch):
            account = self._account(s, run.workspace_id, run.person_id)
            ok = all(
                holds(f, run.context.get("event") or {}, person, account) for f in step.condition
            )
            return _go(run, step.then if ok else step.otherwise, now)
        if isinstance(step, Split):
            who = self._identity(s, run.workspace_id, run.person_id)
            i = timing.pick_path([p.weight for p in step.paths], run.journey, _unit(who),
                                 str(run.entry_no), step.id)  # fmt: skip
            if run.arm == "treatment":  # the split's exposure: paths compared like variations
                out.append({"type": "track", "event": SPLIT, **who,
                            "messageId": f"journey-split:{run.id}:{step.id}", "timestamp": now.isoformat() + "Z",
                            "properties": {"journey": run.journey, "split": f"{run.journey}/{step.id}",
                                           "path": step.paths[i].next, "index": i}})  # fmt: skip
            return _go(run, step.paths[i].next, now)
        if isinstance(step, Exit):
            _end(run, now, "exited", f"exit step {step.id}")
            return False
        if isinstance(step, SetTrait):
            if run.arm == "treatment":
                person[step.trait] = step.value
                out.append({"type": "identify", **_who(s, run.workspace_id, run.person_id),
                            "messageId": f"journey-trait:{run.id}:{step.id}",
                            "timestamp": now.isoformat() + "Z", "traits": {step.trait: step.value}})  # fmt: skip
            return _go(run, j.after(step.id), now)
        assert step.type in MESSAGE_STEPS
        transactional = isinstance(step, SendEmail) and step.transactional
        if run.arm == "treatment" and not transactional and step.type != "webhook":
            allowed = timing.next_allowed(now, j.quiet_hours, tz)
            if allowed > now:
                run.next_at = allowed
                return False
        self._deliver(s, run, j, step, person, now, transactional)
        return _go(run, j.after(step.id), now)

    def _deliver(self, s: Session, run: Run, j: Journey, step: Any, person: dict[str, Any],
                 now: datetime, transactional: bool) -> None:  # fmt: skip
        key = f"{run.id}:{step.id}"
        if s.scalar(select(Delivery.id).where(Delivery.idem_key == key)) is not None:
            return  # done before a crash that lost the run's move: the effect stays once
        d = Delivery(workspace_id=run.workspace_id, idem_key=key, run_id=run.id, journey=run.journey,
                     step=step.id, person_id=run.person_id, channel=step.type, status="pending",
                     transactional=transactional, attempts=0, next_attempt_at=now, target="",
                     payload={}, message_id="", error="", created_at=now)  # fmt: skip
        s.add(d)
        if run.arm == "holdout":
            d.status, d.error = "held", "holdout: gets nothing"
            return
        if (
            step.type != "webhook"
            and not transactional
            and timing.over_cap(
                self._recent_sends(s, run.workspace_id, run.person_id, now, key),
                now,
                self.limits.cap_per_day,
                self.limits.cap_per_week,
            )
        ):
            d.status, d.error = "capped", "frequency cap reached"
            return
        email = str(person.get("email") or "")
        if isinstance(step, SendEmail) and email:
            s.flush()  # its id: the message's own unsubscribe link counts on it
        variables = {"person": {**person, "id": run.person_id, "email": email},
                     "account": self._account(s, run.workspace_id, run.person_id),
                     "event": run.context.get("event") or {},
                     "journey": {"key": run.journey, "name": j.name or run.journey},
                     "unsubscribe_url": self.links.unsubscribe(run.workspace_id, email, d.id)
                     if self.links and email and d.id is not None else ""}  # fmt: skip
        try:
            if isinstance(step, SendEmail):
                if not email:
                    d.status, d.error = "skipped", "the person has no email trait"
                    return
                if s.scalar(select(Suppression.id).where(Suppression.workspace_id == run.workspace_id,
                                                         Suppression.email == email.lower())) is not None:  # fmt: skip
                    d.status, d.error = "suppressed", "on the suppression list"
                    return
                d.target = email
                d.payload = {"subject": render(step.email.subject, variables),
                             "text": render(step.email.text, variables),
                             "html": render(step.email.html, variables, html=True) if step.email.html else ""}  # fmt: skip
            elif isinstance(step, ShowInApp):
                c = step.inapp
                d.payload = {"kind": c.kind, "title": render(c.title, variables),
                             "body": render(c.body, variables), "cta_text": c.cta_text,
                             "cta_url": c.cta_url, "selector": c.selector,
                             "tasks": [t.model_dump() for t in c.tasks],
                             "steps": [t.model_dump() for t in c.steps],
                             "expires_at": (now + timedelta(days=c.expires_days)).isoformat() + "Z"}  # fmt: skip
            elif isinstance(step, CallWebhook):
                d.target = step.url
                base = {"journey": run.journey, "step": step.id, "person_id": run.person_id,
                        "person": variables["person"], "event": variables["event"], "at": now.isoformat() + "Z"}  # fmt: skip
                d.payload = (
                    {"text": render(step.text, variables)} if step.format == "slack" else base
                )
        except TemplateError as e:
            d.status, d.error = "dead", str(e)

    def _recent_sends(
        self, s: Session, ws: str, pid: str, now: datetime, but: str
    ) -> list[datetime]:
        """The person's messages that count against the caps (not `but`, the one deciding)."""
        rows = s.scalars(select(Delivery.created_at).where(
            Delivery.workspace_id == ws, Delivery.person_id == pid, Delivery.transactional.is_(False),
            Delivery.idem_key != but,
            Delivery.channel.in_(("email", "inapp")),
            Delivery.status.in_(("pending", "sending", "sent", "failed", "outbox", "shown", "clicked", "dismissed")),
            Delivery.created_at > now - timedelta(days=7)))  # fmt: skip
        return list(rows)

    @staticmethod
    def _account(s: Session, ws: str, pid: str) -> dict[str, Any]:
        key = s.scalars(select(AccountMembership.group_key).where(
            AccountMembership.workspace_id == ws, AccountMembership.person_id == pid)
            .order_by(AccountMembership.joined_at.desc())).first()  # fmt: skip
        if key is None:
            return {}
        row = s.scalars(
            select(Account).where(Account.workspace_id == ws, Account.group_key == key)
        ).first()
        return dict(row.traits or {}, id=key) if row else {"id": key}


def _distinct(triggers: list[Any]) -> list[Any]:
    """Triggers with the same event and filters, once (many journeys share a trigger)."""
    seen: dict[str, Any] = {}
    for t in triggers:
        seen.setdefault(t.model_dump_json(exclude={"occurrence"}), t)
    return list(seen.values())


def _unit(who: dict[str, str]) -> str:
    return next(iter(who.values()))


def _moment_key(at: datetime) -> int:
    """A run's trigger key for an entry that no event caused (an inactivity lapse, a
    schedule's time): negative, so it never equals a log seq."""
    return -int(at.replace(tzinfo=UTC).timestamp() * 1000)


def _go(run: Run, step: str | None, at: datetime) -> bool:
    run.step, run.step_started_at, run.next_at, run.event_seen_at = step, at, at, None
    return True


def _end(run: Run, now: datetime, status: str, reason: str) -> None:
    run.status, run.ended_at, run.exit_reason, run.next_at = status, now, reason, None
    run.lease_owner, run.lease_until = None, None


def _person(s: Session, pid: str) -> Person | None:
    """The person an id names now (merges followed), through the session's identity map."""
    row = s.get(Person, pid)
    for _ in range(20):  # merges chain a few deep at most
        if row is None or not row.merged_into:
            return row
        row = s.get(Person, row.merged_into)
    return row


def _survivor(s: Session, pid: str) -> str:
    for _ in range(20):  # merges chain a few deep at most
        nxt = s.scalar(select(Person.merged_into).where(Person.id == pid))
        if not nxt:
            return pid
        pid = nxt
    return pid


def _traits(s: Session, model: Any, pid: str) -> dict[str, Any]:
    row = s.get(model, pid)
    return dict(row.traits or {}) if row is not None else {}


def _props(ev: Mapping[str, Any]) -> dict[str, Any]:
    raw = ev.get("properties")
    if isinstance(raw, str | bytes):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
    return raw if isinstance(raw, dict) else dict(raw) if isinstance(raw, Mapping) else {}


def _naive(t: Any) -> datetime:
    if isinstance(t, datetime):
        return t if t.tzinfo is None else t.astimezone(UTC).replace(tzinfo=None)
    return datetime.fromisoformat(str(t).replace("Z", "")).replace(tzinfo=None)
