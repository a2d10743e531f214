"""Storage: the StateStore (SQLAlchemy: SQLite or PostgreSQL) and the EventStore (DuckDB)."""
