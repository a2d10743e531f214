"""Ingest use case: validate each message, hand the good ones to the writer, report the bad."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from traction.ingest.domain import CanonicalEvent, EventError
from traction.ingest.writer import EventWriter
from traction.ops.metrics import Metrics
from traction.privacy.domain import ConsentPolicy, consent_allows

Normalizer = Callable[[Any, datetime], CanonicalEvent]


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class IngestService:
    def __init__(
        self,
        writer: EventWriter,
        max_event_bytes: int,
        metrics: Metrics | None = None,
        consent: Callable[[str], ConsentPolicy] | None = None,
    ) -> None:
        self.writer = writer
        self.max_event_bytes = max_event_bytes
        self.metrics = metrics
        self.consent = consent  # the workspace's consent policy (cached by its owner)

    def _with_consent(
        self, workspace_id: str, items: list[tuple[str, CanonicalEvent]], do_not_track: bool
    ) -> list[tuple[str, CanonicalEvent]]:
        """Drops what the workspace's consent policy does not allow. Dropped events are
        acknowledged like stored ones (a retry would be dropped again) and counted."""
        if self.consent is None or not items:
            return items
        policy = self.consent(workspace_id)
        if policy.stores_everything:
            return items
        kept = [it for it in items if consent_allows(policy, it[1].context, do_not_track)]
        if self.metrics is not None and len(kept) < len(items):
            self.metrics.events.labels("no_consent").inc(len(items) - len(kept))
        return kept

    def validate(
        self,
        workspace_id: str,
        messages: Sequence[Any],
        normalize: Normalizer,
        received_at: datetime,
        body_bytes: int | None = None,
    ) -> tuple[list[tuple[str, CanonicalEvent]], IngestResult]:
        """`body_bytes`: the request's size; when it is within the per-event limit no event can
        exceed it, and the per-event size check (a re-serialisation) is skipped."""
        items: list[tuple[str, CanonicalEvent]] = []
        result = IngestResult()
        check_size = body_bytes is None or body_bytes > self.max_event_bytes
        for i, raw in enumerate(messages):
            try:
                if check_size and len(orjson.dumps(raw)) > self.max_event_bytes:
                    raise EventError(f"event is larger than {self.max_event_bytes // 1024} KB")
                items.append((workspace_id, normalize(raw, received_at)))
            except EventError as e:
                mid = raw.get("messageId") or raw.get("uuid") if isinstance(raw, dict) else None
                result.rejected.append({"index": i, "messageId": mid, "error": str(e)})
        result.accepted = len(items)
        if self.metrics is not None and result.rejected:
            self.metrics.events.labels("rejected").inc(len(result.rejected))
        return items, result

    async def ingest(
        self,
        workspace_id: str,
        messages: Sequence[Any],
        normalize: Normalizer,
        body_bytes: int | None = None,
        do_not_track: bool = False,
    ) -> IngestResult:
        """`do_not_track`: the request came with `DNT: 1` or `Sec-GPC: 1`."""
        items, result = self.validate(workspace_id, messages, normalize, now_utc(), body_bytes)
        items = self._with_consent(workspace_id, items, do_not_track)
        if items:
            await asyncio.wrap_future(self.writer.submit(items))
        return result

    def ingest_sync(
        self, workspace_id: str, messages: Sequence[Any], normalize: Normalizer
    ) -> IngestResult:
        items, result = self.validate(workspace_id, messages, normalize, now_utc())
        items = self._with_consent(workspace_id, items, False)
        if items:
            self.writer.write_now(items)
        return result
