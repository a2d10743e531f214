"""Tenancy: workspaces, API keys with scopes, dashboard users and their sessions."""
