"""Ingestion: the Segment and PostHog tracking APIs, validation, dedupe and the group-commit writer."""
