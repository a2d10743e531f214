"""The audit log: who changed what, when. Append-only."""
