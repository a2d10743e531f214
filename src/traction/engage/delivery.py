"""Sending what the journeys decided: emails over SMTP and webhooks over HTTP, each delivery
claimed with a lease, sent, and marked in its own transaction right after, so a crash can
repeat at most the one message in flight (same Message-ID / Idempotency-Key, so receivers can
tell). Failures retry with exponential backoff and end in the dead-letter list."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import or_, select, update

from traction.engage import email as mail
from traction.engage import webhooks
from traction.engage.links import Links
from traction.engage.models import Delivery, Suppression
from traction.engage.runs import Limits, worker_id
from traction.store.state import StateStore, utcnow

log = logging.getLogger("traction.engage")


class Sender:
    def __init__(self, state: StateStore, links: Links, *, transport: mail.SMTPTransport | None,
                 sender: str, webhook_secret: Callable[[str], str], limits: Limits = Limits(),
                 http: httpx.Client | None = None) -> None:  # fmt: skip
        self.state = state
        self.links = links
        self.transport = transport
        self.sender = sender
        self.webhook_secret = webhook_secret
        self.limits = limits
        self.http = http or httpx.Client(timeout=10.0)

    def deliver(
        self, now: datetime | None = None, limit: int = 500, owner: str | None = None
    ) -> int:
        """Claims due emails and webhooks and sends them; returns how many were tried."""
        now = now or utcnow()
        owner = owner or worker_id()
        until = now + self.limits.lease
        with self.state.session() as s:
            due = (select(Delivery.id).where(Delivery.channel.in_(("email", "webhook")),
                                             Delivery.status.in_(("pending", "failed", "sending")),
                                             or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
                                             or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
                   .order_by(Delivery.id).limit(limit).with_for_update(skip_locked=True))  # fmt: skip
            # one UPDATE claims them (the write lock first: see RunEngine.tick)
            s.execute(update(Delivery).where(Delivery.id.in_(due.scalar_subquery()))
                      .values(lease_owner=owner, lease_until=until)
                      .execution_options(synchronize_session=False))  # fmt: skip
            rows = list(s.scalars(select(Delivery).where(Delivery.lease_owner == owner,
                                                         Delivery.lease_until == until).order_by(Delivery.id)))  # fmt: skip
            todo = []
            for d in rows:
                if d.channel == "email" and self.transport is None:
                    self._to_outbox(s, d, now)  # nothing leaves the machine: no lease needed
                    d.lease_owner, d.lease_until = None, None
                    continue
                if d.channel == "email" and _suppressed(s, d):
                    d.status, d.error, d.lease_owner, d.lease_until = (
                        "suppressed",
                        "on the suppression list",
                        None,
                        None,
                    )
                    continue
                d.status = "sending"  # (`sending` with an expired lease: its worker died mid-send)
                todo.append(_Job(d.id, d.channel, d.workspace_id, d.idem_key, d.target,
                                 dict(d.payload), d.transactional))  # fmt: skip
        for job in todo:  # each marked in its own transaction right after it is sent
            try:
                self._one(job, now)
            except Exception:
                log.exception("delivery failed unexpectedly", extra={"delivery": job.id})
        return len(rows)

    @staticmethod
    def _to_outbox(s: Any, d: Delivery, now: datetime) -> None:
        """No SMTP host configured: the email is kept (and counted) here, honouring the
        suppression list as a send would."""
        d.attempts += 1
        d.message_id = mail.message_id(d.idem_key)
        if _suppressed(s, d):
            d.status, d.error = "suppressed", "on the suppression list"
        else:
            d.status, d.error, d.sent_at = (
                "outbox",
                "no SMTP host configured: kept here, not sent",
                now,
            )

    def _one(self, job: _Job, now: datetime) -> None:
        delivery_id, channel = job.id, job.channel
        ws, key, target, payload, transactional = (
            job.ws,
            job.key,
            job.target,
            job.payload,
            job.transactional,
        )
        error = ""
        status = "sent"
        try:
            if channel == "email":
                assert self.transport is not None  # (without one, emails go to the outbox)
                msg = mail.build(sender=self.sender, to=target, subject=payload["subject"],
                                 text=payload["text"], html=payload.get("html", ""), idem_key=key,
                                 unsubscribe_url=None if transactional else self.links.unsubscribe(ws, target, delivery_id),
                                 open_url=self.links.pixel(delivery_id),
                                 click_url=lambda u: self.links.click(delivery_id, u))  # fmt: skip
                self.transport.send(msg)
            else:
                body = webhooks.body(payload)
                r = self.http.post(target, content=body, headers={
                    "Content-Type": "application/json", "Idempotency-Key": key,
                    "X-Traction-Signature": webhooks.signature(self.webhook_secret(ws), body)})  # fmt: skip
                if r.status_code >= 300:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        except smtplib.SMTPRecipientsRefused as e:  # the address does not exist: a bounce
            codes = [c for c, _ in e.recipients.values()]
            status = "bounced" if codes and min(codes) >= 500 else "failed"
            error = f"{type(e).__name__}: {e.recipients}"[:1000]
        except Exception as e:
            status, error = "failed", f"{type(e).__name__}: {e}"[:1000]
        self._mark(
            delivery_id, now, status, error, mail.message_id(key) if channel == "email" else key
        )

    def _mark(
        self, delivery_id: int, now: datetime, status: str, error: str, message_id: str
    ) -> None:
        """One small UPDATE in its own transaction, right after the send (the commit per
        message is what limits a crash to repeating the one in flight)."""
        done: dict[str, Any] = {"lease_owner": None, "lease_until": None, "error": error, "message_id": message_id,
                "attempts": Delivery.attempts + 1}  # fmt: skip
        with self.state.session() as s:
            if status == "failed":
                attempts = (
                    s.scalar(select(Delivery.attempts).where(Delivery.id == delivery_id)) or 0
                ) + 1
                later = webhooks.next_attempt(attempts, now)
                done |= {"status": "dead", "next_attempt_at": None} if later is None else {
                    "status": "failed", "next_attempt_at": later}  # fmt: skip
            elif status == "bounced":  # permanent: no retry, and the address is suppressed
                done |= {"status": "bounced", "next_attempt_at": None}
                d = s.get(Delivery, delivery_id)
                if d is not None and not _suppressed(s, d):
                    s.add(Suppression(workspace_id=d.workspace_id, email=d.target.lower(),
                                      reason="bounced", at=now))  # fmt: skip
            else:
                done |= {"status": status, "sent_at": now}
            s.execute(update(Delivery).where(Delivery.id == delivery_id).values(**done))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.http.close()


@dataclass(frozen=True)
class _Job:
    """What sending a claimed delivery needs (read while claiming: no second transaction)."""

    id: int
    channel: str
    ws: str
    key: str
    target: str
    payload: dict[str, Any]
    transactional: bool


def _suppressed(s: Any, d: Delivery) -> bool:
    return s.scalar(select(Suppression.id).where(Suppression.workspace_id == d.workspace_id,
                                                 Suppression.email == d.target.lower())) is not None  # fmt: skip


def retry(state: StateStore, workspace_id: str, delivery_id: int) -> dict[str, Any]:
    """A dead letter back in the queue (the dashboard's "retry")."""
    with state.session() as s:
        d = s.get(Delivery, delivery_id)
        if d is None or d.workspace_id != workspace_id:
            raise LookupError(f"no delivery {delivery_id}")
        if d.status != "dead":
            raise ValueError(f"delivery {delivery_id} is {d.status}, not dead")
        d.status, d.attempts, d.next_attempt_at, d.error = "pending", 0, None, ""
        return {"id": d.id, "status": d.status}
