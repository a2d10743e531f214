"""Billing: the plan catalog, entitlements and metered usage, subscriptions, pricing."""
