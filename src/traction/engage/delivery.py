"""Sending what the journeys decided: emails over SMTP and webhooks over HTTP, each delivery
claimed with a lease, sent, and marked in its own transaction right after, so a crash can
repeat at most the one message in flight (same Message-ID / Idempotency-Key, so receivers can
tell). Failures retry with exponential backoff and end in the dead-letter list."""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import httpx
from sqlalchemy import Table, bindparam, or_, select, update

from traction.engage import email as mail
from traction.engage import webhooks
from traction.engage.links import Links
from traction.engage.models import Delivery, Suppression
from traction.engage.runs import Limits, worker_id
from traction.store.state import StateStore, utcnow

log = logging.getLogger("traction.engage")


class Sender:
    def __init__(self, state: StateStore, links: Links, *,
                 transport: Callable[[], mail.SMTPTransport] | None, sender: str,
                 webhook_secret: Callable[[str], str], limits: Limits = Limits(),
                 http: httpx.Client | None = None, connections: int = 4) -> None:  # fmt: skip
        """`transport`: makes one SMTP connection (None: emails go to the outbox).
        `connections`: how many messages are sent at once, each on its own connection
        (the time of a send is mostly waiting for the server's replies)."""
        self.state = state
        self.links = links
        self.transport = transport
        self.sender = sender
        self.webhook_secret = webhook_secret
        self.limits = limits
        self.http = http or httpx.Client(timeout=10.0)
        self.connections = max(1, connections)
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()  # each sending thread's own SMTP connection
        self._opened: list[mail.SMTPTransport] = []
        self._marking = threading.Lock()  # guards the queue of marks
        self._committing = threading.Lock()  # one commit of marks at a time (SQLite: one writer)
        self._queue: list[tuple[int, datetime, str, str, str]] = []

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
            blocked = _suppressed_among(s, [d for d in rows if d.channel == "email"])
            for d in rows:
                if d.channel == "email" and self.transport is None:
                    self._to_outbox(
                        s, d, now, blocked
                    )  # nothing leaves the machine: no lease needed
                    d.lease_owner, d.lease_until = None, None
                    continue
                if d.channel == "email" and (d.workspace_id, d.target.lower()) in blocked:
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
        # each is marked in its own transaction right after it is sent: a crash repeats at
        # most the messages in flight (one per connection)
        if len(todo) > 1 and self.connections > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.connections, thread_name_prefix="traction-send"
                )
            list(self._pool.map(lambda job: self._safely(job, now), todo))
        else:
            for job in todo:
                self._safely(job, now)
        return len(rows)

    def _safely(self, job: _Job, now: datetime) -> None:
        try:
            self._one(job, now)
        except Exception:
            log.exception("delivery failed unexpectedly", extra={"delivery": job.id})

    def _smtp(self) -> mail.SMTPTransport:
        t: mail.SMTPTransport | None = getattr(self._local, "smtp", None)
        if t is None:
            assert self.transport is not None  # (without one, emails go to the outbox)
            t = self._local.smtp = self.transport()
            with self._marking:
                self._opened.append(t)
        return t

    @staticmethod
    def _to_outbox(s: Any, d: Delivery, now: datetime, blocked: set[tuple[str, str]]) -> None:
        """No SMTP host configured: the email is kept (and counted) here, honouring the
        suppression list as a send would."""
        d.attempts += 1
        d.message_id = mail.message_id(d.idem_key)
        if (d.workspace_id, d.target.lower()) in blocked:
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
                msg = mail.build(sender=self.sender, to=target, subject=payload["subject"],
                                 text=payload["text"], html=payload.get("html", ""), idem_key=key,
                                 unsubscribe_url=None if transactional else self.links.unsubscribe(ws, target, delivery_id),
                                 open_url=self.links.pixel(delivery_id),
                                 click_url=lambda u: self.links.click(delivery_id, u))  # fmt: skip
                self._smtp().send(msg)
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
        """Records a send right after it, and returns once that is committed: a crash can
        repeat only messages sent and not yet marked, at most one per connection. Marks that
        arrive together share a commit (the first thread to get the lock commits what is
        queued; the others find theirs done)."""
        with self._marking:
            self._queue.append((delivery_id, now, status, error, message_id))
        with self._committing:
            with self._marking:
                batch, self._queue = self._queue, []
            if not batch:
                return  # committed by the thread before
            with self.state.session() as s:
                sent = [i for i in batch if i[2] == "sent"]
                if sent:  # the common case: one statement for all of them
                    s.execute(
                        _MARK_SENT,
                        [{"b_id": d, "b_at": at, "b_mid": mid} for d, at, _, _, mid in sent],
                    )
                for item in batch:
                    if item[2] != "sent":
                        self._mark_one(s, *item)

    @staticmethod
    def _mark_one(s: Any, delivery_id: int, now: datetime, status: str, error: str,
                  message_id: str) -> None:  # fmt: skip
        done: dict[str, Any] = {"lease_owner": None, "lease_until": None, "error": error, "message_id": message_id,
                "attempts": Delivery.attempts + 1}  # fmt: skip
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
                s.flush()
        else:
            done |= {"status": status, "sent_at": now}
        s.execute(update(Delivery).where(Delivery.id == delivery_id).values(**done))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for t in self._opened:
            t.close()
        self.http.close()


_T = cast(Table, Delivery.__table__)  # Core: one statement executed for many rows
_MARK_SENT = (update(_T).where(_T.c.id == bindparam("b_id"))
              .values(status="sent", sent_at=bindparam("b_at"), message_id=bindparam("b_mid"), error="",
                      lease_owner=None, lease_until=None, attempts=_T.c.attempts + 1))  # fmt: skip


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


def _suppressed_among(s: Any, rows: list[Delivery]) -> set[tuple[str, str]]:
    """(workspace, address) of these deliveries that are on a suppression list: one query."""
    wanted = {(d.workspace_id, d.target.lower()) for d in rows}
    if not wanted:
        return set()
    found = s.execute(select(Suppression.workspace_id, Suppression.email).where(
        Suppression.email.in_(sorted({e for _, e in wanted})))).all()  # fmt: skip
    return {(w, e) for w, e in found} & wanted


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
