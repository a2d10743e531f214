"""Sending what the journeys decided: emails over SMTP and webhooks over HTTP, each delivery
claimed with a lease, sent, and marked in its own transaction right after, so a crash can
repeat at most the one message in flight (same Message-ID / Idempotency-Key, so receivers can
tell). Failures retry with exponential backoff and end in the dead-letter list."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import or_, select

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
        with self.state.session() as s:
            q = (select(Delivery).where(Delivery.channel.in_(("email", "webhook")),
                                        Delivery.status.in_(("pending", "failed", "sending")),
                                        or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
                                        or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
                 .order_by(Delivery.id).limit(limit).with_for_update(skip_locked=True))  # fmt: skip
            rows = list(s.scalars(q))
            todo = []
            for d in rows:
                if d.channel == "email" and self.transport is None:
                    self._to_outbox(s, d, now)  # nothing leaves the machine: no lease needed
                    continue
                # (`sending` with an expired lease: its worker died mid-send)
                d.status, d.lease_owner, d.lease_until = "sending", owner, now + self.limits.lease
                todo.append((d.id, d.channel))
        for delivery_id, channel in todo:
            try:
                self._one(delivery_id, channel, owner, now)
            except Exception:
                log.exception("delivery failed unexpectedly", extra={"delivery": delivery_id})
        return len(rows)

    @staticmethod
    def _to_outbox(s: Any, d: Delivery, now: datetime) -> None:
        """No SMTP host configured: the email is kept (and counted) here, honouring the
        suppression list as a send would."""
        suppressed = s.scalar(select(Suppression.id).where(
            Suppression.workspace_id == d.workspace_id, Suppression.email == d.target.lower()))  # fmt: skip
        d.attempts += 1
        d.message_id = mail.message_id(d.idem_key)
        if suppressed is not None:
            d.status, d.error = "suppressed", "on the suppression list"
        else:
            d.status, d.error, d.sent_at = (
                "outbox",
                "no SMTP host configured: kept here, not sent",
                now,
            )

    def _one(self, delivery_id: int, channel: str, owner: str, now: datetime) -> None:
        with self.state.session() as s:
            d = s.get(Delivery, delivery_id)
            if d is None or d.lease_owner != owner:
                return
            snapshot = (d.workspace_id, d.idem_key, d.target, dict(d.payload), d.transactional)
            if channel == "email" and s.scalar(select(Suppression.id).where(
                    Suppression.workspace_id == d.workspace_id, Suppression.email == d.target.lower())) is not None:  # fmt: skip
                d.status, d.error, d.lease_owner, d.lease_until = (
                    "suppressed",
                    "on the suppression list",
                    None,
                    None,
                )
                return
        ws, key, target, payload, transactional = snapshot
        error = ""
        status = "sent"
        try:
            if channel == "email":
                assert self.transport is not None  # (without one, emails go to the outbox)
                msg = mail.build(sender=self.sender, to=target, subject=payload["subject"],
                                 text=payload["text"], html=payload.get("html", ""), idem_key=key,
                                 unsubscribe_url=None if transactional else self.links.unsubscribe(ws, target),
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
        except Exception as e:
            status, error = "failed", f"{type(e).__name__}: {e}"[:1000]
        self._mark(
            delivery_id, now, status, error, mail.message_id(key) if channel == "email" else key
        )

    def _mark(
        self, delivery_id: int, now: datetime, status: str, error: str, message_id: str
    ) -> None:
        with self.state.session() as s:
            d = s.get(Delivery, delivery_id)
            if d is None:
                return
            d.attempts += 1
            d.lease_owner, d.lease_until, d.error, d.message_id = None, None, error, message_id
            if status == "failed":
                later = webhooks.next_attempt(d.attempts, now)
                d.status, d.next_attempt_at = ("dead", None) if later is None else ("failed", later)
            else:
                d.status, d.sent_at = status, now

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


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
