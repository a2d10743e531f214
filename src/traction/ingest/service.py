"""Ingest use case: validate each message, hand the good ones to the writer, report the bad."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from traction.ingest import prepare
from traction.ingest.domain import CanonicalEvent
from traction.ingest.processes import IngestProcesses
from traction.ingest.writer import EventWriter
from traction.ops.metrics import Metrics
from traction.privacy.domain import ConsentPolicy

Normalizer = prepare.Normalizer


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
        # parse, validate and encode in other processes (a server's; None: in this one)
        self.processes: IngestProcesses | None = None

    def policy(self, workspace_id: str) -> ConsentPolicy | None:
        return None if self.consent is None else self.consent(workspace_id)

    def _count(self, rejected: int, no_consent: int) -> None:
        if self.metrics is not None:
            if rejected:
                self.metrics.events.labels("rejected").inc(rejected)
            if no_consent:
                self.metrics.events.labels("no_consent").inc(no_consent)

    def validate(
        self,
        workspace_id: str,
        messages: Sequence[Any],
        normalize: Normalizer,
        received_at: datetime,
        body_bytes: int | None = None,
        do_not_track: bool = False,
    ) -> tuple[list[tuple[str, CanonicalEvent]], IngestResult]:
        """The events to store (those the consent policy keeps) and what to answer."""
        evs, rejected = prepare.validate(
            messages, normalize, received_at, self.max_event_bytes, body_bytes
        )
        kept = prepare.with_consent(evs, self.policy(workspace_id), do_not_track)
        self._count(len(rejected), len(evs) - len(kept))
        return [(workspace_id, e) for e in kept], IngestResult(len(evs), rejected)

    async def ingest(
        self,
        workspace_id: str,
        messages: Sequence[Any],
        normalize: Normalizer,
        body_bytes: int | None = None,
        do_not_track: bool = False,
    ) -> IngestResult:
        """`do_not_track`: the request came with `DNT: 1` or `Sec-GPC: 1`."""
        self.writer.arriving += 1
        try:
            items, result = self.validate(
                workspace_id, messages, normalize, now_utc(), body_bytes, do_not_track
            )
            done = self.writer.submit(items) if items else None
        finally:
            self.writer.arriving -= 1
        if done is not None:
            await asyncio.wrap_future(done)
        return result

    async def ingest_batch(
        self,
        workspace_id: str,
        batch: prepare.SegmentBatch,
        client_ip: str | None,
        body_bytes: int,
        do_not_track: bool,
    ) -> IngestResult:
        """A parsed `/v1/batch` body: validated and encoded here (its common messages a
        column at a time), committed by the writer."""
        self.writer.arriving += 1
        try:
            p = prepare.prepare_batch(batch, client_ip, now_utc(), self.max_event_bytes,
                                      body_bytes, self.policy(workspace_id), do_not_track)  # fmt: skip
            done = self._submit(workspace_id, p)
        finally:
            self.writer.arriving -= 1
        if done is not None:
            await asyncio.wrap_future(done)
        return IngestResult(p.accepted, p.rejected)

    async def ingest_segment_batch(
        self, workspace_id: str, body: bytes, client_ip: str | None, do_not_track: bool
    ) -> IngestResult:
        """A `/v1/batch` body prepared in an ingest process (parsed, validated, encoded), then
        committed here. Raises EventError when the body itself is refused (a 400)."""
        assert self.processes is not None
        job = prepare.SegmentJob(body, now_utc(), client_ip, self.max_event_bytes,
                                 self.policy(workspace_id), do_not_track)  # fmt: skip
        p = await self.processes.run(prepare.prepare_segment_batch, job)
        done = self._submit(workspace_id, p)
        if done is not None:
            await asyncio.wrap_future(done)
        return IngestResult(p.accepted, p.rejected)

    def _submit(self, workspace_id: str, p: prepare.Prepared) -> Future[int] | None:
        self._count(len(p.rejected), p.no_consent)
        return self.writer.submit_prepared(workspace_id, p) if p.rows.num_rows else None

    def ingest_sync(
        self, workspace_id: str, messages: Sequence[Any], normalize: Normalizer
    ) -> IngestResult:
        items, result = self.validate(workspace_id, messages, normalize, now_utc())
        if items:
            self.writer.write_now(items)
        return result
