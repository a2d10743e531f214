"""Flags, saved groups and SDK keys on the StateStore, and the GrowthBook payload they make.

Every change writes the whole before and after to the history (who, when), in the same
transaction as the change. Payloads are built per environment and cached until anything of
the workspace changes (a version stamp read with one small query), so SDKs polling every few
seconds cost a lookup, not a rebuild.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from traction.audit.service import ACTOR
from traction.flags.domain import crypto
from traction.flags.domain.evaluate import Evaluator
from traction.flags.domain.flags import (
    DEFAULT_ENVIRONMENTS,
    ENV_PATTERN,
    FlagError,
    diff,
    parse_flag,
    payload_feature,
)
from traction.flags.models import Flag, FlagChange, SavedGroup, SDKKey
from traction.store.state import StateStore, utcnow


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Payload:
    """One environment's SDK payload, and an evaluator compiled from it (remote evaluation)."""

    body: dict[str, Any]
    evaluator: Evaluator
    stamp: tuple[Any, ...]


class FlagService:
    # How long a served payload or client key may lag a change made by another process (this
    # one's changes show at once): SDK endpoints then cost no query per request.
    FRESH_SECONDS = 1.0

    def __init__(self, state: StateStore, now: Callable[[], datetime] = utcnow) -> None:
        self.state = state
        self.now = now
        self._payloads: dict[tuple[str, str], tuple[float, Payload]] = {}
        self._keys: dict[str, tuple[float, tuple[str, str, str | None]]] = {}
        self._lock = threading.Lock()

    # -- flags ----------------------------------------------------------------------------

    def put(self, workspace_id: str, key: str, body: Any) -> tuple[dict[str, Any], bool]:
        """Creates or replaces a flag (all or nothing). Returns (the flag, created)."""
        doc = parse_flag(body)
        self._check_parents(workspace_id, key, doc)
        with self.state.session() as s:
            row = self._flag(s, workspace_id, key, lock=True)
            before = row.document if row else None
            if row is None:
                row = Flag(
                    workspace_id=workspace_id,
                    key=key,
                    document=doc,
                    version=1,
                    updated_at=self.now(),
                )
                s.add(row)
            elif row.document == doc:
                return self._out(row), False
            else:
                row.document, row.version, row.updated_at = doc, row.version + 1, self.now()
            self._record(s, workspace_id, "flag", key, row.version, before, doc)
            s.flush()
            out = self._out(row), before is None
        self._changed(workspace_id)
        return out

    def _check_parents(self, workspace_id: str, key: str, doc: dict[str, Any]) -> None:
        """A prerequisite must name a flag that exists (or this one, which is a cycle)."""
        parents = {p["id"] for env in doc["environments"].values() for r in env["rules"]
                   for p in r.get("parentConditions") or []}  # fmt: skip
        if key in parents:
            raise FlagError(f"parentConditions: flag {key!r} cannot depend on itself")
        known = {f["key"] for f in self.flags(workspace_id)}
        missing = sorted(parents - known)
        if missing:
            raise FlagError(f"parentConditions: no flag {missing[0]!r}")

    def get(self, workspace_id: str, key: str) -> dict[str, Any]:
        with self.state.session() as s:
            row = self._flag(s, workspace_id, key)
            if row is None:
                raise NotFound(f"no flag {key!r}")
            return self._out(row)

    def flags(self, workspace_id: str) -> list[dict[str, Any]]:
        with self.state.session() as s:
            rows = s.scalars(
                select(Flag).where(Flag.workspace_id == workspace_id).order_by(Flag.key)
            )
            return [self._out(r) for r in rows]

    def delete(self, workspace_id: str, key: str) -> None:
        with self.state.session() as s:
            row = self._flag(s, workspace_id, key, lock=True)
            if row is None:
                raise NotFound(f"no flag {key!r}")
            self._record(s, workspace_id, "flag", key, row.version + 1, row.document, None)
            s.delete(row)
        self._changed(workspace_id)

    def set_enabled(
        self, workspace_id: str, key: str, environment: str, enabled: bool
    ) -> dict[str, Any]:
        """The kill switch: on or off in one environment, its rules kept."""
        flag = self.get(workspace_id, key)
        body = {k: v for k, v in flag.items() if k not in ("key", "version", "updated_at")}
        env = body["environments"].setdefault(environment, {"enabled": True, "rules": []})
        env["enabled"] = enabled
        return self.put(workspace_id, key, body)[0]

    def apply_schedules(self, now: datetime | None = None) -> int:
        """Every scheduled change that is due, applied in time order (each a change in the
        flag's history, by `system` unless a request set the actor) and taken off the
        schedule. Returns how many were applied. Run by the server's maintenance loop."""
        now = now or self.now()
        with self.state.session() as s:
            rows = [(r.workspace_id, r.key) for r in s.scalars(select(Flag))
                    if any(_when(e["at"]) <= now for e in r.document.get("schedule") or [])]  # fmt: skip
        applied = 0
        for ws, key in rows:
            flag = self.get(ws, key)
            body = {k: v for k, v in flag.items() if k not in ("key", "version", "updated_at")}
            due = sorted(
                (e for e in body["schedule"] if _when(e["at"]) <= now), key=lambda e: _when(e["at"])
            )
            body["schedule"] = [e for e in body["schedule"] if _when(e["at"]) > now]
            for e in due:
                env = body["environments"].setdefault(
                    e["environment"], {"enabled": True, "rules": []}
                )
                env["enabled"] = e["enabled"]
                applied += 1
            token = ACTOR.set(ACTOR.get() or "system")
            try:
                self.put(ws, key, body)
            finally:
                ACTOR.reset(token)
        return applied

    def history(self, workspace_id: str, key: str, kind: str = "flag") -> list[dict[str, Any]]:
        with self.state.session() as s:
            rows = s.scalars(select(FlagChange).where(
                FlagChange.workspace_id == workspace_id, FlagChange.kind == kind, FlagChange.key == key,
            ).order_by(FlagChange.id.desc()))  # fmt: skip
            return [{"version": r.version, "actor": r.actor, "at": r.at.isoformat() + "Z",
                     "change": "created" if r.before is None else "deleted" if r.after is None else "updated",
                     "diff": diff(r.before or {}, r.after or {}), "before": r.before, "after": r.after}
                    for r in rows]  # fmt: skip

    @staticmethod
    def _flag(s: Session, ws: str, key: str, lock: bool = False) -> Flag | None:
        q = select(Flag).where(Flag.workspace_id == ws, Flag.key == key)
        return s.scalars(q.with_for_update() if lock else q).first()

    @staticmethod
    def _out(row: Flag) -> dict[str, Any]:
        return {"key": row.key, **row.document, "version": row.version,
                "updated_at": row.updated_at.isoformat() + "Z"}  # fmt: skip

    def _record(self, s: Session, ws: str, kind: str, key: str, version: int,
                before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:  # fmt: skip
        s.add(FlagChange(workspace_id=ws, kind=kind, key=key, version=version, actor=ACTOR.get() or "",
                         at=self.now(), before=before, after=after))  # fmt: skip

    # -- saved groups -------------------------------------------------------------------------

    def put_group(
        self, workspace_id: str, key: str, values: list[Any], attribute: str = "id"
    ) -> dict[str, Any]:
        if not isinstance(values, list) or len(values) > 100_000:
            raise FlagError("values: a list of at most 100,000 values")
        if any(not isinstance(v, str | int | float) or isinstance(v, bool) for v in values):
            raise FlagError("values: strings or numbers (ids, emails, ...)")
        with self.state.session() as s:
            row = s.scalars(select(SavedGroup).where(SavedGroup.workspace_id == workspace_id,
                                                     SavedGroup.key == key).with_for_update()).first()  # fmt: skip
            after = {"attribute": attribute, "values": values}
            before = {"attribute": row.attribute, "values": row.values} if row else None
            if row is None:
                row = SavedGroup(workspace_id=workspace_id, key=key, attribute=attribute, values=values,
                                 version=1, updated_at=self.now())  # fmt: skip
                s.add(row)
            else:
                row.attribute, row.values = attribute, values
                row.version, row.updated_at = row.version + 1, self.now()
            self._record(s, workspace_id, "group", key, row.version, before, after)
            out = {"key": key, **after, "version": row.version}
        self._changed(workspace_id)
        return out

    def groups(self, workspace_id: str) -> list[dict[str, Any]]:
        with self.state.session() as s:
            rows = s.scalars(select(SavedGroup).where(SavedGroup.workspace_id == workspace_id)
                             .order_by(SavedGroup.key))  # fmt: skip
            return [{"key": r.key, "attribute": r.attribute, "values": r.values, "version": r.version}
                    for r in rows]  # fmt: skip

    # -- SDK keys and payloads ----------------------------------------------------------------

    def sdk_keys(self, workspace_id: str) -> list[dict[str, Any]]:
        """The workspace's client keys, one per environment at least (made on first use)."""
        with self.state.session() as s:
            rows = list(s.scalars(select(SDKKey).where(SDKKey.workspace_id == workspace_id,
                                                       SDKKey.revoked_at.is_(None))))  # fmt: skip
            have = {r.environment for r in rows}
            for env in DEFAULT_ENVIRONMENTS:
                if env not in have:
                    row = SDKKey(key="tr_sdk_" + secrets.token_urlsafe(18), workspace_id=workspace_id,
                                 environment=env, created_at=self.now())  # fmt: skip
                    s.add(row)
                    rows.append(row)
            return [{"key": r.key, "environment": r.environment, "encrypted": r.encryption_key is not None,
                     **({"decryption_key": r.encryption_key} if r.encryption_key else {})}
                    for r in sorted(rows, key=lambda r: r.environment)]  # fmt: skip

    def create_sdk_key(
        self, workspace_id: str, environment: str, encrypt: bool = False
    ) -> dict[str, Any]:
        if not re.match(ENV_PATTERN, environment):
            raise FlagError("environment: lowercase letters, digits, - and _ (at most 40)")
        with self.state.session() as s:
            row = SDKKey(key="tr_sdk_" + secrets.token_urlsafe(18), workspace_id=workspace_id,
                         environment=environment, created_at=self.now(),
                         encryption_key=crypto.new_key() if encrypt else None)  # fmt: skip
            s.add(row)
            return {"key": row.key, "environment": environment, "encrypted": encrypt,
                    **({"decryption_key": row.encryption_key} if encrypt else {})}  # fmt: skip

    def resolve_key(self, client_key: str) -> tuple[str, str, str | None]:
        """(workspace, environment, encryption key) of a live client key, else NotFound."""
        now = time.monotonic()
        hit = self._keys.get(client_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.state.session() as s:
            row = s.get(SDKKey, client_key)
            if row is None or row.revoked_at is not None:
                raise NotFound("unknown SDK client key")
            found = row.workspace_id, row.environment, row.encryption_key
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[client_key] = (now + self.FRESH_SECONDS, found)
        return found

    def _stamp(self, workspace_id: str) -> tuple[Any, ...]:
        """Changes whenever a flag or group of the workspace does (history only grows)."""
        with self.state.session() as s:
            row = s.execute(select(func.count(FlagChange.id), func.max(FlagChange.id))
                            .where(FlagChange.workspace_id == workspace_id)).one()  # fmt: skip
            return tuple(row)

    def payload(self, workspace_id: str, environment: str) -> Payload:
        now = time.monotonic()
        with self._lock:
            hit = self._payloads.get((workspace_id, environment))
        if hit is not None and hit[0] > now:
            return hit[1]
        stamp = self._stamp(workspace_id)
        if hit is not None and hit[1].stamp == stamp:
            with self._lock:
                self._payloads[(workspace_id, environment)] = (now + self.FRESH_SECONDS, hit[1])
            return hit[1]
        with self.state.session() as s:
            flags = list(s.scalars(select(Flag).where(Flag.workspace_id == workspace_id)))
            groups = list(
                s.scalars(select(SavedGroup).where(SavedGroup.workspace_id == workspace_id))
            )
        features = {}
        for f in sorted(flags, key=lambda f: f.key):
            feature = payload_feature(f.document, environment)
            if feature is not None:
                features[f.key] = feature
        updated = max(
            [f.updated_at for f in flags] + [g.updated_at for g in groups],
            default=datetime(1970, 1, 1),
        )
        body = {"features": features, "savedGroups": {g.key: g.values for g in groups},
                "dateUpdated": updated.isoformat(timespec="milliseconds") + "Z"}  # fmt: skip
        result = Payload(body, Evaluator(body), stamp)
        with self._lock:
            self._payloads[(workspace_id, environment)] = (now + self.FRESH_SECONDS, result)
        return result

    def _changed(self, workspace_id: str) -> None:
        """This process's own change: its payloads are rebuilt on the next request."""
        with self._lock:
            for k in [k for k in self._payloads if k[0] == workspace_id]:
                del self._payloads[k]

    def sdk_payload(self, client_key: str) -> dict[str, Any]:
        """What `GET /api/features/{client_key}` answers (encrypted when the key says so)."""
        ws, env, secret = self.resolve_key(client_key)
        body = self.payload(ws, env).body
        if secret is None:
            return body
        return {"features": {}, "encryptedFeatures": crypto.encrypt(json.dumps(body["features"]), secret),
                "encryptedSavedGroups": crypto.encrypt(json.dumps(body["savedGroups"]), secret),
                "dateUpdated": body["dateUpdated"]}  # fmt: skip


def _when(text: str) -> datetime:
    """A stored schedule time (ISO 8601, maybe with a zone) as naive UTC."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t
