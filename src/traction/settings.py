"""Typed settings, read once from `TRACTION_*` environment variables and `traction.toml`.

Every other module receives a `Settings` object instead of reading the environment,
so tests can build one per temporary data directory and nothing depends on import order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from traction.ingest.domain import IPNetwork, parse_networks


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRACTION_", toml_file="traction.toml", extra="ignore"
    )

    data_dir: Path = Field(
        default=Path("./traction-data"), description="Where every embedded file lives."
    )
    state_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in data_dir."
    )
    events_path: Path | None = Field(default=None, description="DuckDB file; default in data_dir.")
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True

    # Ingest limits follow Segment's published HTTP API limits.
    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_decompressed_bytes: int = 8 * 1024 * 1024
    max_json_depth: int = 32

    # Group commit: the writer takes everything queued, up to this many events, per commit.
    commit_max_events: int = 20_000
    # The event store moves DuckDB's write-ahead log into the event file once it has grown
    # past this many MB: a checkpoint, on a thread of its own, while appends go to a side
    # journal (every commit into the file would wait for it; store/journal.py). Each move
    # also rewrites the dedupe index, which grows with the event log, so fewer moves are less
    # work in all: at DuckDB's default (16) they took 13-22% of the writer's time, at 64
    # 5-15%, but each is longer (0.3-1.1 s on a 6M-event log, against 0.2-0.6), and a
    # restart after a crash replays up to this much (64 MB: ~1.3 s). See docs/benchmarks.md
    # ("The event log's checkpoints", "Checkpoints beside the writer").
    event_checkpoint_mb: int = Field(64, ge=1, le=4096)
    # The rows of the latest appends kept in memory, up to this size, for the reactors'
    # reads of the log's head (0: every read goes to the file). See store/tail.py.
    event_tail_mb: int = Field(64, ge=0, le=4096)
    # Processes that parse, validate and encode tracking batches for a server and the demo
    # build, beside the one that commits them (0: all in the server's own process). Off by
    # default: on a 2-core box they did not pay (the one writer's commits are the limit
    # there; docs/benchmarks.md). Try one per spare core.
    ingest_processes: int = Field(0, ge=0, le=64)
    # Analytics queries: interrupted past this time; refused past this many result rows.
    # Analytics queries running at once, in all and per workspace: the rest wait (up to the
    # query timeout, then 503), so ingestion keeps its cores under heavy dashboards.
    # Unset: half the cores (at least one); per workspace: the same.
    query_concurrency: int | None = Field(None, ge=1, le=64)
    query_concurrency_per_workspace: int | None = Field(None, ge=1, le=64)
    # DuckDB's threads (0: one per core). Unset: one core fewer than the machine has (at least
    # one), so ingestion always keeps a core under heavy analytics: see docs/benchmarks.md.
    query_threads: int | None = Field(None, ge=0, le=256)
    # How often the server applies retention and purges deleted events from the event file
    # (0: never on its own; `traction privacy purge` or the API then do it).
    maintenance_interval_seconds: float = Field(3600.0, ge=0, le=7 * 86400)
    # How often subscriptions are brought up to date (renewals, trial ends, downgrades).
    billing_interval_seconds: float = Field(60.0, ge=0, le=86400)
    query_timeout_seconds: float = 30.0
    query_max_rows: int = 200_000
    run_worker: bool = True
    worker_poll_seconds: float = 0.5
    # while events keep arriving, the share of time the reactors in the server's thread
    # (journeys; all of them without `reactor_process`) may work; they catch up when
    # ingestion is quiet
    reactor_busy_share: float = Field(default=0.5, gt=0, le=1)
    # The catalog, last-seen and meter reactors in a process the server starts beside it
    # (and serves the log), so they use another core rather than the server's GIL; the
    # journeys reactor stays in the server. Off: all of them in a thread of the server, which
    # then rests them while events arrive (`reactor_busy_share`). See docs/benchmarks.md.
    reactor_process: bool = True
    # Shared counters for rate limits and lockouts across replicas (e.g. redis://host:6379/0);
    # empty: kept in this process. Limits use the `limits` notation ("5/15minutes").
    redis_url: str = ""
    login_limit_per_account: str = "5/15minutes"
    login_limit_per_address: str = "30/15minutes"
    api_rate_limit: str = "50/second"
    ingest_rate_limit: str = "500/second"

    @field_validator(
        "login_limit_per_account", "login_limit_per_address", "api_rate_limit", "ingest_rate_limit"
    )
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit like '50/second' or '5/15minutes'"
            ) from None
        return value

    # Engagement: email over SMTP (no host: emails are kept in the outbox, not sent), the
    # address links in messages point at, the secret that signs them (empty: one made and
    # kept in the data dir), frequency caps per person across journeys, the worker's pace.
    smtp_host: str = ""
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: float = Field(30.0, gt=0, le=600)
    # Messages sent at once, each on its own SMTP connection (and webhooks alike).
    smtp_connections: int = Field(4, ge=1, le=64)
    email_from: str = "Traction <noreply@localhost>"
    public_url: str = "http://127.0.0.1:8000"
    link_secret: str = ""
    engage_cap_per_day: int = Field(3, ge=1, le=1000)
    engage_cap_per_week: int = Field(10, ge=1, le=10_000)
    engage_interval_seconds: float = Field(2.0, ge=0, le=3600)
    # How long a worker holds a claimed run or delivery (another takes it over after a crash).
    engage_lease_seconds: float = Field(60.0, ge=0.1, le=3600)
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # How often every segment's membership is recomputed ($segment_entered / $segment_left).
    segment_interval_seconds: float = Field(300.0, ge=1, le=86_400)
    # the server computes each workspace's scorecard as it starts and then this often, so
    # the dashboard's first view finds it warm (0: only on request)
    scorecard_interval_seconds: float = Field(60.0, ge=0, le=86_400)

    # What one workspace may create (a runaway script cannot fill the StateStore).
    max_api_keys: int = Field(100, ge=2, le=100_000)
    max_saved_insights: int = Field(1000, ge=1, le=1_000_000)
    max_dashboards: int = Field(200, ge=1, le=100_000)
    # Require a key (any secret key) or a dashboard session for /metrics, /docs, /openapi.json.
    protect_meta_endpoints: bool = False
    # The largest body the admin API (/api/...) reads; larger ones get 413 before any work.
    api_max_body_bytes: int = Field(1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    session_days: int = 14
    # Signed out after this long without a request (the cookie itself lasts session_days).
    session_idle_minutes: int = Field(12 * 60, ge=1, le=60 * 24 * 90)
    # Session cookies `Secure`: "auto" when the request came over HTTPS (directly, or through
    # a trusted proxy's X-Forwarded-Proto), "always" behind a TLS terminator you trust, "never".
    secure_cookies: Literal["auto", "always", "never"] = "auto"
    # Proxies whose X-Forwarded-For is believed (comma-separated IPs or CIDR ranges). Empty:
    # the connection's own address is the client's (what a direct deployment wants).
    trusted_proxies: str = ""

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def trusted_proxy_networks(self) -> list[IPNetwork]:
        return parse_networks(self.trusted_proxies)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def resolved_state_url(self) -> str:
        return self.state_url or f"sqlite:///{(self.data_dir / 'state.db').resolve()}"

    @property
    def resolved_query_concurrency(self) -> tuple[int, int]:
        """(in all, per workspace). Per workspace, unset: as many as may ever run, lent
        slots included."""
        total = self.query_concurrency or max(1, _cores() // 2)
        return total, self.query_concurrency_per_workspace or total + self.lent_query_slots

    @property
    def lent_query_slots(self) -> int:
        """Analytics slots beyond `query_concurrency` that a query may take while no events
        are arriving: the cores kept for ingestion, lent while it is idle (a server's first
        scorecard, a quiet night). None when the concurrency is set."""
        if self.query_concurrency is not None:
            return 0
        return max(0, _cores() - max(1, _cores() // 2))

    def without_a_server(self) -> Settings:
        """These settings for a command or notebook that opens the data dir itself (no server
        holds it, so no ingestion needs a core kept free): one analytics query per core at
        once, unless set. The scorecard's queries are small, and on 2 cores two at once
        take it from 2.6 to 1.6 s (`docs/benchmarks.md`)."""
        if self.query_concurrency is not None:
            return self
        return self.model_copy(update={"query_concurrency": _cores()})

    @property
    def resolved_query_threads(self) -> int:
        """DuckDB's thread count; 0 leaves DuckDB's own default (one per core)."""
        if self.query_threads is None:
            return max(1, _cores() - 1)
        return self.query_threads

    @property
    def resolved_events_path(self) -> Path:
        return self.events_path or (self.data_dir / "events.duckdb")

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


def _cores() -> int:
    """The cores this process may use (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
