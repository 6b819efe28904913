"""The gateway's state layer: customers, keys, credit ledger, usage rollups, audit events.

One interface (:class:`~newapi_gateway.store.base.Store`), two implementations:
:class:`~newapi_gateway.store.sqlite.SqliteStore` (embedded default, one process) and
:class:`~newapi_gateway.store.postgres.PostgresStore` (PostgreSQL, plus Redis pub/sub for key
invalidation across replicas). :func:`create_store` picks one from configuration.
"""

from __future__ import annotations

from pathlib import Path

from newapi_gateway.store.base import Store
from newapi_gateway.store.errors import (
    Conflict,
    IdempotencyConflict,
    InsufficientCredit,
    KeyRefused,
    MigrationError,
    NotFound,
    SpendingCapExceeded,
    StoreError,
    StoreUnavailable,
)
from newapi_gateway.store.models import (
    AuditEvent,
    BalanceSnapshot,
    Customer,
    Debit,
    Health,
    Hold,
    KeyRecord,
    KeySettings,
    LedgerEntry,
    Settlement,
    Usage,
    UsageRow,
)

__all__ = [
    "AuditEvent",
    "BalanceSnapshot",
    "Conflict",
    "Customer",
    "Debit",
    "Health",
    "Hold",
    "IdempotencyConflict",
    "InsufficientCredit",
    "KeyRecord",
    "KeyRefused",
    "KeySettings",
    "LedgerEntry",
    "MigrationError",
    "NotFound",
    "Settlement",
    "SpendingCapExceeded",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Usage",
    "UsageRow",
    "create_store",
]


def create_store(
    *, dsn: str | None = None, redis_url: str | None = None, sqlite_path: str | Path = "newapi.db"
) -> Store:
    """PostgreSQL (+ Redis invalidation when ``redis_url``) when ``dsn`` is set, else embedded SQLite.

    Call ``await store.open()`` before use and ``await store.close()`` at shutdown.
    """
    if dsn:
        from newapi_gateway.store.postgres import PostgresStore

        return PostgresStore(dsn, redis_url=redis_url)
    from newapi_gateway.store.sqlite import SqliteStore

    return SqliteStore(sqlite_path)
