"""Persistence: the node's stores in SQLite (embedded) or PostgreSQL, with migrations.

Open a database with :func:`create_engine`, bring its schema up to date with
:func:`migrate` (at every start), then build the stores on the engine::

    engine = create_engine(sqlite_url(state_dir / "node.db"))
    migrate(engine)
    datasets = SqlDatasetStore(engine, clock)
    audit = SqlAuditLog(engine, clock)
    negotiations = SqlNegotiationStore(engine, audit, clock)
"""

from connector.store.audit import SqlAuditLog
from connector.store.datasets import DatasetStore, SqlDatasetStore
from connector.store.engine import (
    StoreError,
    create_engine,
    head_revision,
    migrate,
    schema_revision,
    sqlite_url,
)
from connector.store.negotiations import SqlNegotiationStore
from connector.store.requests import RequestLog, SqlRequestLog

__all__ = [
    "DatasetStore",
    "RequestLog",
    "SqlAuditLog",
    "SqlDatasetStore",
    "SqlNegotiationStore",
    "SqlRequestLog",
    "StoreError",
    "create_engine",
    "head_revision",
    "migrate",
    "schema_revision",
    "sqlite_url",
]
