from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from traction.engage.runs import RunEngine
from traction.store.events import EventKinds


class JourneyReactor:
    """Enters people into journeys from each committed batch, ends runs whose goal happened,
    and wakes runs waiting for an event. Idempotent by the trigger's seq (redelivery safe)."""

    name = "engage.journeys"
    columns = ("workspace_id", "person_id", "type", "name", "timestamp", "properties")

    def __init__(self, engine: RunEngine) -> None:
        self.engine = engine

    def wants(self) -> EventKinds:
        """Only the events a journey starts on, ends on or waits for: most of the log is
        none of those, and is then not read for this reactor."""
        return self.engine.wanted()

    def handle(self, batch: Sequence[dict[str, Any]]) -> None:
        self.engine.on_events(batch)
