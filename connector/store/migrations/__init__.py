"""Alembic migrations of the node schema (run by :func:`connector.store.migrate`)."""
