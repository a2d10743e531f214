from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from traction.billing.service import BillingService


class MeterReactor:
    """Keeps every event-fed meter current from each stored batch (usage limits and usage
    prices read it, so they never scan the log)."""

    name = "billing.meters"
    columns = ("workspace_id", "account_id", "user_id", "name", "timestamp", "properties")

    def __init__(self, billing: BillingService) -> None:
        self.billing = billing

    def handle(self, batch: Sequence[dict[str, Any]]) -> None:
        self.billing.apply_events(batch)
