from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from traction.catalog.service import CatalogService


class CatalogReactor:
    """Keeps the event and property catalog current from every stored batch, so reading the
    catalog never scans the log."""

    name = "catalog"
    columns = ("workspace_id", "person_id", "type", "name", "timestamp", "properties")

    def __init__(self, catalog: CatalogService) -> None:
        self.catalog = catalog

    def handle(self, batch: Sequence[dict[str, Any]]) -> None:
        self.catalog.apply(batch)
