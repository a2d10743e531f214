"""Engagement on the stores: journey definitions (checked whole, templates included), the
engine and the sender (`runs`, `delivery`), what the in-app snippet shows, the suppression
list, and each journey's figures with the holdout's lift measured by the experiment engine."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from traction.engage.delivery import Sender
from traction.engage.domain.journeys import (
    CallWebhook,
    Journey,
    JourneyError,
    SendEmail,
    ShowInApp,
    Split,
    parse_journey,
)
from traction.engage.domain.templates import TemplateError, check
from traction.engage.links import Links
from traction.engage.models import Delivery, JourneyRow, Run, Suppression
from traction.engage.runs import ENTERED, RunEngine
from traction.flags.domain.flags import diff
from traction.store.state import StateStore, utcnow

if TYPE_CHECKING:
    from traction.catalog.service import CatalogService
    from traction.experiments.service import ExperimentService

META = ("key", "version", "updated_at", "trigger_label")  # what `get` adds to the document
INAPP_EVENTS = {
    "shown": "$message_shown",
    "clicked": "$message_clicked",
    "dismissed": "$message_dismissed",
}


BOUNCE_KINDS = {"hard": "bounced", "soft": "", "complaint": "complained"}


MESSAGE_COUNTS = ("delivered", "opened", "clicked", "unsubscribed")


class NotFound(LookupError):
    pass


class EngageService:
    def __init__(self, state: StateStore, engine: RunEngine | None, sender: Sender | None,
                 links: Links, catalog: CatalogService | None = None,
                 experiments: ExperimentService | None = None,
                 done: Callable[[str, list[str], list[str]], dict[str, set[str]]] | None = None,
                 segment_exists: Callable[[str, str], bool] | None = None) -> None:  # fmt: skip
        """`engine` and `sender` None: definitions and figures only (the CLI's `apply`).
        `done(ws, people, events)`: which of the events each person has done (checklists)."""
        self.done = done
        self.segment_exists = segment_exists
        self.state = state
        self.engine = engine
        self.sender = sender
        self.links = links
        self.catalog = catalog
        self.experiments = experiments

    # -- definitions --------------------------------------------------------------------------

    def check(self, workspace_id: str, body: Any) -> Journey:
        """The journey, or JourneyError naming the first problem and where it is."""
        j = parse_journey(body)
        t = j.trigger
        for where, segment in (("trigger.segment.key", t.segment and t.segment.key),
                               ("trigger.schedule.segment", t.schedule and t.schedule.segment)):  # fmt: skip
            if segment and self.segment_exists and not self.segment_exists(workspace_id, segment):
                raise JourneyError(
                    f"{where}: no segment {segment!r} (create it first: docs/segments.md)"
                )
        traits = self._traits(workspace_id)
        for i, step in enumerate(j.steps):
            where = f"steps[{i}]"
            try:
                if isinstance(step, SendEmail):
                    for field in ("subject", "text", "html"):
                        check(getattr(step.email, field), f"{where}.email.{field}", traits)
                elif isinstance(step, ShowInApp):
                    for field in ("title", "body"):
                        check(getattr(step.inapp, field), f"{where}.inapp.{field}", traits)
                elif isinstance(step, CallWebhook):
                    check(step.text, f"{where}.text", traits)
            except TemplateError as e:
                raise JourneyError(str(e)) from None
        return j

    def _traits(self, workspace_id: str) -> dict[str, list[str]] | None:
        if self.catalog is None:
            return None
        out: dict[str, list[str]] = {}
        for source in ("person", "account"):
            try:
                out[source] = [
                    p["name"] for p in self.catalog.properties(workspace_id, source=source)
                ]
            except TypeError:
                return None
        return out if any(out.values()) else None

    def put(self, workspace_id: str, key: str, body: Any) -> tuple[dict[str, Any], bool]:
        return self.apply(workspace_id, {key: body})[0]

    def apply(self, workspace_id: str, bodies: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
        """Several journeys, all or nothing: every one is checked before any is saved."""
        checked = {}
        for key, body in bodies.items():
            try:
                checked[key] = self.check(workspace_id, body).model_dump(
                    mode="json", by_alias=True, exclude_none=True
                )
            except JourneyError as e:
                raise JourneyError(f"{key}: {e}" if len(bodies) > 1 else str(e)) from None
        out = []
        with self.state.session() as s:
            for key, doc in checked.items():
                row = s.scalars(select(JourneyRow).where(JourneyRow.workspace_id == workspace_id,
                                                         JourneyRow.key == key).with_for_update()).first()  # fmt: skip
                created = row is None
                if row is None:
                    row = JourneyRow(
                        workspace_id=workspace_id,
                        key=key,
                        document=doc,
                        version=1,
                        updated_at=utcnow(),
                    )
                    s.add(row)
                elif row.document != doc:
                    row.document, row.version, row.updated_at = doc, row.version + 1, utcnow()
                s.flush()
                out.append((self._out(row), created))
        if self.engine is not None:
            self.engine.changed(workspace_id)
        return out

    def plan(self, workspace_id: str, bodies: dict[str, Any]) -> list[dict[str, Any]]:
        """What `apply` would change (for `traction journeys apply`'s diff), checked first."""
        changes = []
        for key, body in bodies.items():
            try:
                doc = self.check(workspace_id, body).model_dump(
                    mode="json", by_alias=True, exclude_none=True
                )
            except JourneyError as e:
                raise JourneyError(f"{key}: {e}" if len(bodies) > 1 else str(e)) from None
            try:
                before = {k: v for k, v in self.get(workspace_id, key).items() if k not in META}
            except NotFound:
                before = None
            changes.append({"key": key, "change": "create" if before is None else
                            ("none" if before == doc else "update"), "diff": diff(before or {}, doc)})  # fmt: skip
        return changes

    def get(self, workspace_id: str, key: str) -> dict[str, Any]:
        with self.state.session() as s:
            row = s.scalars(select(JourneyRow).where(JourneyRow.workspace_id == workspace_id,
                                                     JourneyRow.key == key)).first()  # fmt: skip
            if row is None:
                raise NotFound(f"no journey {key!r}")
            return self._out(row)

    def journeys(self, workspace_id: str) -> list[dict[str, Any]]:
        with self.state.session() as s:
            rows = s.scalars(
                select(JourneyRow)
                .where(JourneyRow.workspace_id == workspace_id)
                .order_by(JourneyRow.key)
            )
            return [self._out(r) for r in rows]

    def delete(self, workspace_id: str, key: str) -> None:
        with self.state.session() as s:
            row = s.scalars(select(JourneyRow).where(JourneyRow.workspace_id == workspace_id,
                                                     JourneyRow.key == key)).first()  # fmt: skip
            if row is None:
                raise NotFound(f"no journey {key!r}")
            s.delete(row)
        if self.engine is not None:
            self.engine.changed(workspace_id)

    @staticmethod
    def _out(row: JourneyRow) -> dict[str, Any]:
        trigger = Journey.model_validate(row.document).trigger.label
        return {"key": row.key, **row.document, "version": row.version, "trigger_label": trigger,
                "updated_at": row.updated_at.isoformat() + "Z"}  # fmt: skip

    def preview(self, workspace_id: str, body: Any) -> list[dict[str, Any]]:
        """Each message step rendered for the workspace's most recently seen person with an
        email (or a sample), as the step would render it now: the dashboard's live preview.
        A journey that does not check answers JourneyError, as `put` would."""
        from traction.engage.domain.templates import render
        from traction.identity.models import Person

        j = self.check(workspace_id, body)
        with self.state.session() as s:
            rows = s.scalars(select(Person).where(Person.workspace_id == workspace_id, Person.merged_into.is_(None))
                             .order_by(Person.last_seen_at.desc().nulls_last()).limit(200))  # fmt: skip
            who = next((r for r in rows if (r.traits or {}).get("email")), None)
            traits = (
                dict(who.traits or {}) if who else {"email": "ada@example.com", "first_name": "Ada"}
            )
            pid = who.id if who else "sample"
        email = str(traits.get("email", ""))
        variables: dict[str, Any] = {"person": {**traits, "id": pid, "email": email}, "account": {},
                     "event": {}, "journey": {"key": "preview", "name": j.name},
                     "unsubscribe_url": self.links.unsubscribe(workspace_id, email)}  # fmt: skip
        out = []
        for step in j.steps:
            try:
                if isinstance(step, SendEmail):
                    out.append({"step": step.id, "type": "email", "to": email,
                                "subject": render(step.email.subject, variables),
                                "text": render(step.email.text, variables),
                                "html": render(step.email.html, variables, html=True) if step.email.html else ""})  # fmt: skip
                elif isinstance(step, ShowInApp):
                    out.append({"step": step.id, "type": "inapp", "kind": step.inapp.kind,
                                "title": render(step.inapp.title, variables),
                                "body": render(step.inapp.body, variables)})  # fmt: skip
            except TemplateError as e:  # a trait this person lacks: say so, per step
                out.append({"step": step.id, "type": step.type, "error": str(e)})
        return out

    # -- the work -------------------------------------------------------------------------------

    def work(self, now: datetime | None = None) -> int:
        """One round: move due runs, then send what they decided. Returns the work done."""
        assert self.engine is not None and self.sender is not None
        moved = self.engine.tick(now)
        return moved + self.sender.deliver(now)

    def scan_inactive(self, now: datetime | None = None) -> int:
        """Enters the people an `inactive` trigger is waiting for (the maintenance loop)."""
        return self.engine.scan_inactive(now) if self.engine is not None else 0

    def scan_schedules(self, now: datetime | None = None) -> int:
        """Enters the segment members whose scheduled time has come (the maintenance loop)."""
        return self.engine.scan_schedules(now) if self.engine is not None else 0

    def webhook_secret(self, workspace_id: str) -> str:
        return (
            "whsec_"
            + hmac.new(
                self.links._key, f"webhook:{workspace_id}".encode(), hashlib.sha256
            ).hexdigest()[:40]
        )

    # -- in-app ---------------------------------------------------------------------------------

    def pending_inapp(self, workspace_id: str, person_id: str) -> list[dict[str, Any]]:
        now = utcnow()
        with self.state.session() as s:
            rows = s.scalars(select(Delivery).where(Delivery.workspace_id == workspace_id, Delivery.person_id == person_id,
                                                    Delivery.channel == "inapp", Delivery.status.in_(("pending", "shown")))
                             .order_by(Delivery.id))  # fmt: skip
            out = []
            for d in rows:
                expires = d.payload.get("expires_at")
                if expires and expires < now.isoformat() + "Z":
                    d.status = "expired"
                    continue
                item = {
                    "id": d.id,
                    "journey": d.journey,
                    "step": d.step,
                    "status": d.status,
                    **d.payload,
                }
                if item.get("tasks") and self.done is not None:
                    names = [t["event"] for t in item["tasks"]]
                    did = self.done(workspace_id, [person_id], names).get(person_id, set())
                    item["tasks"] = [{**t, "done": t["event"] in did} for t in item["tasks"]]
                out.append(item)
            return out

    def inapp_event(
        self, workspace_id: str, person_id: str, delivery_id: int, what: str
    ) -> dict[str, Any]:
        """Shown, clicked or dismissed (a dismissed message does not come back)."""
        if what not in INAPP_EVENTS:
            raise JourneyError(f"event: one of {', '.join(INAPP_EVENTS)}")
        with self.state.session() as s:
            d = s.get(Delivery, delivery_id)
            if (
                d is None
                or d.workspace_id != workspace_id
                or d.person_id != person_id
                or d.channel != "inapp"
            ):
                raise NotFound(f"no in-app message {delivery_id} for this person")
            order = ["pending", "shown", "clicked", "dismissed"]
            if d.status in order and order.index(what) > order.index(d.status):
                d.status = what
                if what == "shown":
                    d.sent_at = utcnow()
                if what == "clicked":
                    d.clicked_at = utcnow()
            return {
                "id": d.id,
                "status": d.status,
                "event": INAPP_EVENTS[what],
                "journey": d.journey,
                "step": d.step,
            }

    # -- suppressions ---------------------------------------------------------------------------

    def suppress(self, workspace_id: str, email: str, reason: str = "unsubscribed") -> None:
        email = email.strip().lower()
        with self.state.session() as s:
            if s.scalar(select(Suppression.id).where(Suppression.workspace_id == workspace_id,
                                                     Suppression.email == email)) is None:  # fmt: skip
                s.add(
                    Suppression(workspace_id=workspace_id, email=email, reason=reason, at=utcnow())
                )

    def unsubscribe(self, workspace_id: str, email: str, delivery_id: int | None = None) -> None:
        """An unsubscribe link was used: the address is suppressed, and the message it came
        in (if the link says which) counts it."""
        self.suppress(workspace_id, email, "unsubscribed")
        if delivery_id is None:
            return
        with self.state.session() as s:
            d = s.get(Delivery, delivery_id)
            if d is not None and d.workspace_id == workspace_id and d.unsubscribed_at is None:
                d.unsubscribed_at = utcnow()

    def bounce(self, workspace_id: str, email: str, kind: str = "hard",
               message_id: str | None = None, reason: str = "") -> dict[str, Any]:  # fmt: skip
        """A bounce or complaint reported after the send (an ESP's webhook, a DSN reader):
        a hard bounce or a complaint suppresses the address; the message, if named by its
        Message-ID, is marked bounced (a soft bounce only notes why)."""
        if kind not in BOUNCE_KINDS:
            raise JourneyError(f"kind: one of {', '.join(BOUNCE_KINDS)}")
        email = email.strip().lower()
        if "@" not in email or len(email) > 320:
            raise JourneyError("email: an address")
        found = None
        with self.state.session() as s:
            if message_id:
                d = s.scalars(select(Delivery).where(Delivery.workspace_id == workspace_id,
                                                     Delivery.message_id == message_id.strip())).first()  # fmt: skip
                if d is None:
                    raise NotFound(f"no message with Message-ID {message_id}")
                found = d.id
                note = f"{kind} bounce: {reason}".strip().rstrip(":")
                if kind == "soft":
                    d.error = note[:1000]
                else:
                    d.status, d.error = "bounced", note[:1000]
        suppressed = kind != "soft"
        if suppressed:
            self.suppress(workspace_id, email, BOUNCE_KINDS[kind])
        return {"delivery": found, "suppressed": suppressed}

    def unsuppress(self, workspace_id: str, email: str) -> bool:
        with self.state.session() as s:
            row = s.scalars(select(Suppression).where(Suppression.workspace_id == workspace_id,
                                                      Suppression.email == email.strip().lower())).first()  # fmt: skip
            if row is None:
                return False
            s.delete(row)
            return True

    def suppressions(self, workspace_id: str) -> list[dict[str, Any]]:
        with self.state.session() as s:
            rows = s.scalars(
                select(Suppression)
                .where(Suppression.workspace_id == workspace_id)
                .order_by(Suppression.at.desc())
            )
            return [
                {"email": r.email, "reason": r.reason, "at": r.at.isoformat() + "Z"} for r in rows
            ]

    # -- figures --------------------------------------------------------------------------------

    def deliveries(self, workspace_id: str, *, person_id: str | None = None, status: str | None = None,
                   journey: str | None = None, limit: int = 200) -> list[dict[str, Any]]:  # fmt: skip
        with self.state.session() as s:
            q = select(Delivery).where(Delivery.workspace_id == workspace_id)
            for col, val in (
                (Delivery.person_id, person_id),
                (Delivery.status, status),
                (Delivery.journey, journey),
            ):
                if val is not None:
                    q = q.where(col == val)
            rows = s.scalars(q.order_by(Delivery.id.desc()).limit(limit))
            return [{"id": d.id, "journey": d.journey, "step": d.step, "person_id": d.person_id, "channel": d.channel,
                     "status": d.status, "target": d.target, "attempts": d.attempts, "error": d.error,
                     "message_id": d.message_id, "created_at": d.created_at.isoformat() + "Z",
                     "sent_at": d.sent_at.isoformat() + "Z" if d.sent_at else None,
                     "opened_at": d.opened_at.isoformat() + "Z" if d.opened_at else None,
                     "clicked_at": d.clicked_at.isoformat() + "Z" if d.clicked_at else None} for d in rows]  # fmt: skip

    def stats(self, workspace_id: str, key: str) -> dict[str, Any]:
        """Entries by arm and status, messages by step and status, and the goal's rate in
        each arm with the lift over the holdout from the experiment engine."""
        j = Journey.model_validate(
            {k: v for k, v in self.get(workspace_id, key).items() if k not in META}
        )
        with self.state.session() as s:
            runs = s.execute(select(Run.arm, Run.status, func.count()).where(
                Run.workspace_id == workspace_id, Run.journey == key).group_by(Run.arm, Run.status)).all()  # fmt: skip
            sends = s.execute(select(Delivery.step, Delivery.channel, Delivery.status, func.count(),
                                     func.count(Delivery.sent_at), func.count(Delivery.opened_at),
                                     func.count(Delivery.clicked_at), func.count(Delivery.unsubscribed_at)).where(
                Delivery.workspace_id == workspace_id, Delivery.journey == key)
                .group_by(Delivery.step, Delivery.channel, Delivery.status)).all()  # fmt: skip
        entries: dict[str, dict[str, int]] = {}
        for arm, status, n in runs:
            entries.setdefault(arm, {})[status] = int(n)
        messages: dict[str, dict[str, Any]] = {}
        for step, channel, status, n, *counted in sends:
            # the status counts, then what happened to them: delivered (accepted by SMTP or
            # shown in the app), opened, clicked, unsubscribed through this message's link
            m = messages.setdefault(step, {"channel": channel, **dict.fromkeys(MESSAGE_COUNTS, 0)})
            if status not in MESSAGE_COUNTS:
                m[status] = int(n)
            for name, value in zip(MESSAGE_COUNTS, counted, strict=True):
                m[name] += int(value)
        checklists = self._checklists(workspace_id, key, j)
        return {"journey": key, "entries": entries, "checklists": checklists,
                "entered": sum(sum(v.values()) for v in entries.values()),
                "active": sum(v.get("active", 0) for v in entries.values()),
                "reached_goal": sum(v.get("goal", 0) for v in entries.values()),
                "messages": messages, "lift": self._lift(workspace_id, key, j),
                "splits": self._splits(workspace_id, key, j)}  # fmt: skip

    def _checklists(
        self, workspace_id: str, key: str, j: Journey
    ) -> dict[str, list[dict[str, Any]]]:
        """Each checklist step's completion funnel: the people it was shown to, then how many
        of them had done the first task, the first two, ... all of them (a task counts once
        its event is in the person's log, as the checklist itself ticks it)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for step in j.steps:
            if not (isinstance(step, ShowInApp) and step.inapp.kind == "checklist"):
                continue
            with self.state.session() as s:
                shown = sorted(set(s.scalars(select(Delivery.person_id).where(
                    Delivery.workspace_id == workspace_id, Delivery.journey == key,
                    Delivery.step == step.id, Delivery.sent_at.is_not(None)))))  # fmt: skip
            tasks = step.inapp.tasks
            did = (
                self.done(workspace_id, shown, [t.event for t in tasks])
                if shown and self.done
                else {}
            )
            funnel = [{"step": "shown", "people": len(shown)}]
            for n, task in enumerate(tasks, 1):
                wanted = {t.event for t in tasks[:n]}
                people = sum(1 for p in shown if wanted <= did.get(p, set()))
                funnel.append({"step": task.title, "people": people})
            out[step.id] = funnel
        return out

    def _splits(self, workspace_id: str, key: str, j: Journey) -> dict[str, Any]:
        """Each split's paths compared on the goal like an experiment's variations (the first
        path is the control), on the `$journey_split` exposures of the treatment arm."""
        out: dict[str, Any] = {}
        if j.goal is None:
            return out
        for step in j.steps:
            if isinstance(step, Split) and len({p.next for p in step.paths}) == len(step.paths):
                out[step.id] = self._compare(workspace_id, f"{key}/{step.id}", j,
                                             [(p.next, p.weight) for p in step.paths],
                                             ("$journey_split", "split", "path"))  # fmt: skip
        return out

    def _compare(self, workspace_id: str, key: str, j: Journey, arms: list[tuple[str, float]],
                 exposure: tuple[str, str, str]) -> dict[str, Any] | None:  # fmt: skip
        """The goal's conversion within its window from exposure, each arm against the first,
        by the experiment engine (not a second copy of the maths)."""
        if self.experiments is None or j.goal is None:
            return None
        from traction.experiments.compile import Exposure
        from traction.experiments.domain import ExperimentDocument, ExperimentError

        doc = ExperimentDocument.model_validate({
            "variations": [{"key": k, "weight": w} for k, w in arms],
            "primary": [{"key": "goal", "name": f"reached {j.goal.event.event}", "kind": "conversion",
                         "event": j.goal.event.model_dump(), "window_days": j.goal.within_days}],
            "cuped": False, "correction": "none"})  # fmt: skip
        try:
            res = self.experiments.analyse(workspace_id, key, doc, Exposure(*exposure))
        except ExperimentError as e:
            return {"error": str(e)}
        rows = res["results"]
        means = {k: v for r in rows for k, v in r["means"].items()}
        return {"units": res["units"], "rates": means, "srm_p_value": res["srm_p_value"],
                "comparisons": [{"arm": r["variation"], "against": r["control"], "lift": r["lift"], "ci": r["ci"],
                                 "p_value": r["p_value"], "significant": r["significant"]} for r in rows]}  # fmt: skip

    def _lift(self, workspace_id: str, key: str, j: Journey) -> dict[str, Any] | None:
        """The goal's conversion within its window from entry, holdout (control) against
        treatment, on the `$journey_entered` exposures."""
        if j.holdout <= 0:
            return None
        res = self._compare(workspace_id, key, j, [("holdout", j.holdout), ("treatment", 1 - j.holdout)],
                            (ENTERED, "journey", "arm"))  # fmt: skip
        if res is None or "error" in res:
            return res
        (row,) = res["comparisons"]
        return {"units": res["units"], "rates": res["rates"], "lift": row["lift"], "ci": row["ci"],
                "p_value": row["p_value"], "significant": row["significant"], "srm_p_value": res["srm_p_value"]}  # fmt: skip
