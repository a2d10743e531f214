"""Prometheus metrics. One registry per app, so several servers in one test process don't clash."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "traction_ingest_events",
            "Events received by outcome (stored, duplicate, rejected, suppressed: an erased person's, no_consent: dropped by the consent policy).",
            ["outcome"],
            registry=self.registry,
        )
        self.requests = Counter(
            "traction_ingest_requests",
            "Tracking API requests by API and HTTP status.",
            ["api", "status"],
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "traction_ingest_commit_seconds",
            "Time to make one commit group durable (identity + event append + state commit).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.commit_events = Histogram(
            "traction_ingest_commit_events",
            "Events per commit group.",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000),
            registry=self.registry,
        )
        self.ingest_processes = Gauge(
            "traction_ingest_processes",
            "Ingest processes ready to parse, validate and encode tracking batches.",
            registry=self.registry,
        )
        self.queue_events = Gauge(
            "traction_ingest_queue_events", "Events waiting for the writer.", registry=self.registry
        )
        self.merges_refused = Counter(
            "traction_identity_merges_refused",
            "Links refused because both people were already identified.",
            registry=self.registry,
        )
        self.reactor_lag = Gauge(
            "traction_reactor_lag_events",
            "Events stored but not yet handed to a reactor.",
            ["reactor"],
            registry=self.registry,
        )
        self.reactor_process_restarts = Counter(
            "traction_reactor_process_restarts",
            "Times the reactor process exited and was started again (killed, out of memory).",
            registry=self.registry,
        )
