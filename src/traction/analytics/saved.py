"""Saved insights and user-arranged dashboards (several per workspace; tiles in order)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from traction.analytics.domain.kpis import KPIConfig
from traction.analytics.models import AnalyticsSettings, Dashboard, DashboardTile, SavedInsight
from traction.audit.service import record
from traction.store.state import StateStore, utcnow


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Tile:
    id: int
    position: int
    insight: SavedInsight


def _cap(s: Session, model: Any, workspace_id: str, most: int, what: str) -> None:
    """Refuse one more when the workspace has `most` already (ValueError: a 422)."""
    n = s.scalar(select(func.count()).select_from(model).where(model.workspace_id == workspace_id))
    if (n or 0) >= most:
        raise ValueError(
            f"this workspace has {n} {what}, the most allowed: delete unused ones first"
        )


class SavedInsights:
    def __init__(
        self,
        state: StateStore,
        kinds: dict[str, type[BaseModel]],
        max_insights: int = 1000,
        max_dashboards: int = 200,
    ) -> None:
        self.state = state
        self.kinds = kinds
        self.max_insights = max_insights
        self.max_dashboards = max_dashboards

    # -- insights ----------------------------------------------------------------------------

    def parse(self, kind: str, spec: dict[str, Any]) -> BaseModel:
        """The spec as its kind's model; raises ValueError / ValidationError naming the problem."""
        model = self.kinds.get(kind)
        if model is None:
            raise ValueError(f"kind must be one of {', '.join(sorted(self.kinds))}")
        return model.model_validate(spec)

    def save(
        self,
        workspace_id: str,
        name: str,
        kind: str,
        spec: dict[str, Any],
        user_id: str | None = None,
    ) -> SavedInsight:
        name = name.strip()
        if not name or len(name) > 200:
            raise ValueError("name must have 1 to 200 characters")
        parsed = self.parse(kind, spec)
        with self.state.session() as s:
            _cap(s, SavedInsight, workspace_id, self.max_insights, "saved insights")
            row = SavedInsight(
                workspace_id=workspace_id,
                name=name,
                kind=kind,
                spec=parsed.model_dump(mode="json"),
                created_by=user_id,
            )
            s.add(row)
            s.flush()
            return row

    def list_insights(self, workspace_id: str) -> list[SavedInsight]:
        with self.state.session() as s:
            return list(
                s.scalars(
                    select(SavedInsight)
                    .where(SavedInsight.workspace_id == workspace_id)
                    .order_by(SavedInsight.created_at)
                )
            )

    def get(self, workspace_id: str, insight_id: str) -> SavedInsight:
        with self.state.session() as s:
            row = s.get(SavedInsight, insight_id)
            if row is None or row.workspace_id != workspace_id:
                raise NotFound(f"no saved insight {insight_id}")
            return row

    def delete(self, workspace_id: str, insight_id: str) -> None:
        self.get(workspace_id, insight_id)
        with self.state.session() as s:
            s.execute(delete(DashboardTile).where(DashboardTile.insight_id == insight_id))
            s.execute(delete(SavedInsight).where(SavedInsight.id == insight_id))

    # -- dashboards --------------------------------------------------------------------------

    def create_dashboard(
        self, workspace_id: str, name: str, user_id: str | None = None
    ) -> Dashboard:
        name = name.strip()
        if not name or len(name) > 200:
            raise ValueError("name must have 1 to 200 characters")
        with self.state.session() as s:
            _cap(s, Dashboard, workspace_id, self.max_dashboards, "dashboards")
            d = Dashboard(workspace_id=workspace_id, name=name, created_by=user_id)
            s.add(d)
            s.flush()
            return d

    def dashboards(self, workspace_id: str) -> list[Dashboard]:
        with self.state.session() as s:
            return list(
                s.scalars(
                    select(Dashboard)
                    .where(Dashboard.workspace_id == workspace_id)
                    .order_by(Dashboard.created_at)
                )
            )

    def dashboard(self, workspace_id: str, dashboard_id: str) -> Dashboard:
        with self.state.session() as s:
            d = s.get(Dashboard, dashboard_id)
            if d is None or d.workspace_id != workspace_id:
                raise NotFound(f"no dashboard {dashboard_id}")
            return d

    def delete_dashboard(self, workspace_id: str, dashboard_id: str) -> None:
        self.dashboard(workspace_id, dashboard_id)
        with self.state.session() as s:
            s.execute(delete(DashboardTile).where(DashboardTile.dashboard_id == dashboard_id))
            s.execute(delete(Dashboard).where(Dashboard.id == dashboard_id))

    def tiles(self, workspace_id: str, dashboard_id: str) -> list[Tile]:
        self.dashboard(workspace_id, dashboard_id)
        with self.state.session() as s:
            rows = s.execute(
                select(DashboardTile, SavedInsight)
                .join(SavedInsight, SavedInsight.id == DashboardTile.insight_id)
                .where(DashboardTile.dashboard_id == dashboard_id)
                .order_by(DashboardTile.position, DashboardTile.id)
            ).all()
            return [Tile(t.id, t.position, i) for t, i in rows]

    def add_tile(self, workspace_id: str, dashboard_id: str, insight_id: str) -> int:
        self.dashboard(workspace_id, dashboard_id)
        self.get(workspace_id, insight_id)  # same workspace only
        with self.state.session() as s:
            last = s.scalar(
                select(func.max(DashboardTile.position)).where(
                    DashboardTile.dashboard_id == dashboard_id
                )
            )
            tile = DashboardTile(
                dashboard_id=dashboard_id, insight_id=insight_id, position=(last or 0) + 1
            )
            s.add(tile)
            s.flush()
            return tile.id

    def remove_tile(self, workspace_id: str, dashboard_id: str, tile_id: int) -> None:
        self._tile(workspace_id, dashboard_id, tile_id)
        with self.state.session() as s:
            s.execute(delete(DashboardTile).where(DashboardTile.id == tile_id))

    def move_tile(self, workspace_id: str, dashboard_id: str, tile_id: int, offset: int) -> None:
        """Swap with the neighbour `offset` places away (-1: up, +1: down); a no-op at the ends."""
        tiles = self.tiles(workspace_id, dashboard_id)
        order = [t.id for t in tiles]
        if tile_id not in order:
            raise NotFound(f"no tile {tile_id} on this dashboard")
        i = order.index(tile_id)
        j = i + offset
        if not 0 <= j < len(order):
            return
        order[i], order[j] = order[j], order[i]
        with self.state.session() as s:
            for pos, tid in enumerate(order, 1):
                tile = s.get(DashboardTile, tid)
                assert tile is not None
                tile.position = pos

    def _tile(self, workspace_id: str, dashboard_id: str, tile_id: int) -> None:
        if tile_id not in {t.id for t in self.tiles(workspace_id, dashboard_id)}:
            raise NotFound(f"no tile {tile_id} on this dashboard")

    # -- KPI configuration -------------------------------------------------------------------

    def kpi_config(self, workspace_id: str) -> KPIConfig:
        with self.state.session() as s:
            row = s.get(AnalyticsSettings, workspace_id)
            return KPIConfig.model_validate(row.kpi_config) if row else KPIConfig()

    def set_kpi_config(self, workspace_id: str, values: dict[str, Any]) -> KPIConfig:
        """Validates (ValidationError names the field) and stores; unset fields keep defaults."""
        config = KPIConfig.model_validate(values)
        after = config.model_dump(mode="json")
        with self.state.session() as s:
            row = s.get(AnalyticsSettings, workspace_id)
            before = row.kpi_config if row else KPIConfig().model_dump(mode="json")
            if row is None:
                s.add(AnalyticsSettings(workspace_id=workspace_id, kpi_config=after))
            else:
                row.kpi_config = after
                row.updated_at = utcnow()
            if before != after:
                record(s, workspace_id, "kpi_config.changed", "", before=before, after=after)
        return config
