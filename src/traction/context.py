"""The running system's parts, opened once and shared by the server, the CLI and tests."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from traction.analytics.domain.specs import SPEC_KINDS
from traction.analytics.kept import KeptValues
from traction.analytics.saved import SavedInsights
from traction.analytics.service import AnalyticsService
from traction.audit.service import AuditLog
from traction.billing.providers import Providers
from traction.billing.service import BillingService
from traction.catalog.service import CatalogService
from traction.engage.service import EngageService
from traction.experiments.service import ExperimentService
from traction.flags.service import FlagService
from traction.identity.queries import AccountQueries, PersonQueries
from traction.identity.service import backfill_traits
from traction.ingest.domain import normalize_segment
from traction.ingest.service import IngestService, now_utc
from traction.ingest.writer import EventWriter, WriterOverloaded, WriterStopped
from traction.ops.metrics import Metrics
from traction.privacy.service import PrivacyService
from traction.segments.service import SegmentService
from traction.settings import Settings
from traction.store.events import DuckDBEventStore
from traction.store.state import StateStore
from traction.throttle import Throttle
from traction.workspaces.service import WorkspaceService

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    state: StateStore
    events: DuckDBEventStore
    metrics: Metrics
    workspaces: WorkspaceService
    persons: PersonQueries
    accounts: AccountQueries
    writer: EventWriter
    ingest: IngestService
    analytics: AnalyticsService
    saved: SavedInsights
    catalog: CatalogService
    throttle: Throttle
    privacy: PrivacyService
    audit: AuditLog
    billing: BillingService
    providers: Providers
    flags: FlagService
    experiments: ExperimentService
    segments: SegmentService
    engage: EngageService

    @classmethod
    def open(cls, settings: Settings, *, start_writer: bool = True) -> Context:
        settings.ensure_dirs()
        state = StateStore(settings.resolved_state_url)
        state.migrate()
        events = DuckDBEventStore(
            settings.resolved_events_path,
            threads=settings.resolved_query_threads,
            checkpoint_mb=settings.event_checkpoint_mb,
            tail_mb=settings.event_tail_mb,
        )
        if not events.traits_mirrored():  # data from before the traits mirror: fill it once
            with state.session() as s:
                traits = backfill_traits(s)
            if traits:
                events.mirror_traits(traits)
        metrics = Metrics()
        writer = EventWriter(state, events, metrics, max_group_events=settings.commit_max_events)
        if start_writer:
            writer.start()
        workspaces = WorkspaceService(state, max_keys=settings.max_api_keys)
        saved = SavedInsights(
            state, dict(SPEC_KINDS), settings.max_saved_insights, settings.max_dashboards
        )
        persons = PersonQueries(state, events)
        catalog = CatalogService(state)
        privacy = PrivacyService(state, events, writer, catalog, persons)
        accounts = AccountQueries(state, events)
        flags = FlagService(state)
        billing = BillingService(state, accounts.member_count, _emitter(writer))
        analytics = AnalyticsService(
            events,
            workspaces,
            timeout_seconds=settings.query_timeout_seconds,
            max_rows=settings.query_max_rows,
            kpi_config=saved.kpi_config,
            max_concurrent=settings.resolved_query_concurrency[0],
            max_concurrent_per_workspace=settings.resolved_query_concurrency[1],
            lent=settings.lent_query_slots,
            ingest_idle=writer.idle,
            kept=KeptValues(state),
        )
        experiments = ExperimentService(state, analytics, flags)
        segments = SegmentService(state, events, _emitter(writer), analytics._slot)
        return cls(
            settings=settings,
            state=state,
            events=events,
            metrics=metrics,
            workspaces=workspaces,
            persons=persons,
            accounts=accounts,
            writer=writer,
            ingest=IngestService(
                writer, settings.max_event_bytes, metrics, lambda ws: privacy.policy(ws).consent
            ),
            analytics=analytics,
            saved=saved,
            catalog=catalog,
            throttle=Throttle(
                settings.redis_url or "memory://",
                login_per_account=settings.login_limit_per_account,
                login_per_address=settings.login_limit_per_address,
                api_per_key=settings.api_rate_limit,
                ingest_per_key=settings.ingest_rate_limit,
            ),
            privacy=privacy,
            audit=AuditLog(state),
            billing=billing,
            providers=Providers(state, billing),
            flags=flags,
            experiments=experiments,
            segments=segments,
            engage=_engage(settings, state, events, writer, catalog, experiments, segments),
        )

    def close(self) -> None:
        """Idempotent: commit what is queued, then close both stores."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self.analytics.close()  # background scorecard refreshes: dropped, not waited for
        self.billing.close()
        if self.engage.sender is not None:
            self.engage.sender.close()
        if self.ingest.processes is not None:  # (requests in flight there get a 503)
            self.ingest.processes.close()
        self.writer.stop()
        self.events.close()
        self.state.dispose()


def _engage(settings: Settings, state: StateStore, events: DuckDBEventStore, writer: EventWriter,
            catalog: CatalogService, experiments: ExperimentService,
            segments: SegmentService) -> EngageService:  # fmt: skip
    """Journeys: the engine (entries, steps), the sender (SMTP when a host is set, else the
    outbox; webhooks), and the signed links in messages."""
    from datetime import datetime, timedelta

    from traction.engage.delivery import Sender
    from traction.engage.email import SMTPTransport
    from traction.engage.links import Links, secret_for
    from traction.engage.runs import Limits, RunEngine

    links = Links(secret_for(settings.link_secret, settings.data_dir), settings.public_url)
    limits = Limits(settings.engage_cap_per_day, settings.engage_cap_per_week,
                    timedelta(seconds=settings.engage_lease_seconds))  # fmt: skip

    def occurrences(ws: str, person: str, name: str, seq: int) -> int:
        with events.reading() as cur:
            row = cur.execute("SELECT count(*) FROM events WHERE workspace_id = ? AND person_id = ? "
                              "AND name = ? AND seq <= ?", [ws, person, name, seq]).fetchone()  # fmt: skip
        return int(row[0]) if row else 0

    def last_seen(
        ws: str, name: str, since: datetime, until: datetime
    ) -> list[tuple[str, datetime]]:
        with events.reading() as cur:
            return [(str(p), t) for p, t in cur.execute(
                "SELECT COALESCE(o.person_id, e.person_id) AS p, max(e.timestamp) AS t FROM events e "
                "LEFT JOIN person_overrides o ON o.workspace_id = e.workspace_id AND o.old_person_id = e.person_id "
                "WHERE e.workspace_id = ? AND e.name = ? GROUP BY 1 HAVING max(e.timestamp) >= ? "
                "AND max(e.timestamp) < ?", [ws, name, since, until]).fetchall()]  # fmt: skip

    engine = RunEngine(state, _emitter(writer), occurrences, limits, links, last_seen,
                       segments.member_ids)  # fmt: skip

    def transport() -> SMTPTransport:
        return SMTPTransport(settings.smtp_host, settings.smtp_port, settings.smtp_security,
                             settings.smtp_user, settings.smtp_password, settings.smtp_timeout_seconds)  # fmt: skip

    svc: EngageService
    sender = Sender(state, links, transport=transport if settings.smtp_host else None,
                    sender=settings.email_from, webhook_secret=lambda ws: svc.webhook_secret(ws),
                    limits=limits, http=httpx.Client(timeout=settings.webhook_timeout_seconds),
                    connections=settings.smtp_connections)  # fmt: skip

    def done(ws: str, people: list[str], names: list[str]) -> dict[str, set[str]]:
        """Which of `names` each person (any of their merged ids) has done: one query."""
        with events.reading() as cur:
            rows = cur.execute(
                "SELECT DISTINCT COALESCE(o.person_id, e.person_id), e.name FROM events e LEFT JOIN "
                "person_overrides o ON o.workspace_id = e.workspace_id AND o.old_person_id = e.person_id "
                "WHERE e.workspace_id = ? AND COALESCE(o.person_id, e.person_id) IN (SELECT unnest(?::VARCHAR[])) "
                "AND e.name IN (SELECT unnest(?::VARCHAR[]))", [ws, people, names]).fetchall()  # fmt: skip
        out: dict[str, set[str]] = {}
        for person, name in rows:
            out.setdefault(str(person), set()).add(str(name))
        return out

    svc = EngageService(state, engine, sender, links, catalog, experiments, done, segments.exists)
    return svc


def _emitter(writer: EventWriter) -> Callable[[str, list[dict[str, Any]]], None]:
    """How services put their own events (subscription changes, upgrade triggers) into the
    log: through the writer like any other, not waited for (they must not slow the call
    that caused them); a full queue drops them with a warning."""

    def emit(workspace_id: str, messages: list[dict[str, Any]]) -> None:
        now = now_utc()
        items = [(workspace_id, normalize_segment(m, now)) for m in messages]
        try:
            if writer.alive:
                writer.submit(items)
            else:
                writer.write_now(items)
        except (WriterOverloaded, WriterStopped):
            log.warning("system events dropped", extra={"events": len(items)})

    return emit
