"""Admin-only facts the store does not hold (yet): key labels and one-call signups.

ADAPTER, to be replaced by store support: the store's key record has no ``label`` and there is no
idempotency record for ``POST /api/v1/admin/users``. Until the store's schema carries them
(requested: ``keys.label text`` and a ``signups (idempotency_key PK, customer_id, key_id)``
table in a store migration), this module keeps them in two side tables of the same database,
created idempotently on first use with their own connection (never the store's hot-path ones):

* ``admin_key_labels (key_id PRIMARY KEY, label)``;
* ``admin_signups (idempotency_key PRIMARY KEY, customer_id, key_id)``: a signup first reserves
  its idempotency key, then issues the key and records its id; a replay finds the record.

Both are written only by the admin API, so they are off the request path entirely.
"""

from __future__ import annotations

import asyncio
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from newapi_gateway.store import Store, StoreUnavailable

T = TypeVar("T")

_PG_TABLES = (
    "CREATE TABLE IF NOT EXISTS admin_key_labels (key_id bigint PRIMARY KEY, label text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS admin_signups (idempotency_key text PRIMARY KEY, customer_id bigint NOT NULL, "
    "key_id bigint, created_at timestamptz NOT NULL DEFAULT now())",
)
_SQLITE_TABLES = (
    "CREATE TABLE IF NOT EXISTS admin_key_labels (key_id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS admin_signups (idempotency_key TEXT PRIMARY KEY, customer_id INTEGER NOT NULL, "
    "key_id INTEGER)",
)
_PG_DOWN: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError,
)


@dataclass(frozen=True)
class Signup:
    idempotency_key: str
    customer_id: int
    key_id: int | None


class KeyMeta(ABC):
    """Labels and signup records (see the module docstring)."""

    @abstractmethod
    async def labels(self, key_ids: Sequence[int]) -> dict[int, str]: ...

    @abstractmethod
    async def set_label(self, key_id: int, label: str | None) -> None: ...

    @abstractmethod
    async def reserve_signup(self, idempotency_key: str, customer_id: int) -> Signup:
        """Record a signup for ``customer_id`` or return the existing record of that key."""

    @abstractmethod
    async def finish_signup(self, idempotency_key: str, key_id: int) -> int:
        """Record ``key_id`` for the signup unless a concurrent replay recorded one first; returns
        the key id the signup ends up with (the caller revokes its own key when it lost)."""

    async def label(self, key_id: int) -> str | None:
        return (await self.labels([key_id])).get(key_id)

    async def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


class PostgresKeyMeta(KeyMeta):
    def __init__(self, dsn: str, timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._ready = False

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=2, timeout=self.timeout,
                                                       command_timeout=self.timeout,
                                                       max_inactive_connection_lifetime=60)
            async with self._pool.acquire(timeout=self.timeout) as conn:
                if not self._ready:
                    # CREATE TABLE IF NOT EXISTS races with itself (pg_type unique violation) when two
                    # connections or replicas run it at once: serialise it with a transaction-level lock.
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('newapi-admin-side-tables'))")
                        for statement in _PG_TABLES:
                            await conn.execute(statement)
                    self._ready = True
                return list(await conn.fetch(sql, *args))
        except _PG_DOWN as exc:
            if self._pool is not None:
                await self._pool.expire_connections()
            raise StoreUnavailable("postgresql", f"{type(exc).__name__}: {exc}") from exc

    async def labels(self, key_ids: Sequence[int]) -> dict[int, str]:
        rows = await self._fetch("SELECT key_id, label FROM admin_key_labels WHERE key_id = ANY($1::bigint[])",
                                 list(key_ids))
        return {int(r[0]): str(r[1]) for r in rows}

    async def set_label(self, key_id: int, label: str | None) -> None:
        if label is None:
            await self._fetch("DELETE FROM admin_key_labels WHERE key_id = $1", key_id)
        else:
            await self._fetch("INSERT INTO admin_key_labels (key_id, label) VALUES ($1, $2) "
                              "ON CONFLICT (key_id) DO UPDATE SET label = EXCLUDED.label", key_id, label)

    async def reserve_signup(self, idempotency_key: str, customer_id: int) -> Signup:
        await self._fetch("INSERT INTO admin_signups (idempotency_key, customer_id) VALUES ($1, $2) "
                          "ON CONFLICT DO NOTHING", idempotency_key, customer_id)
        rows = await self._fetch("SELECT customer_id, key_id FROM admin_signups WHERE idempotency_key = $1",
                                 idempotency_key)
        return Signup(idempotency_key, int(rows[0][0]), None if rows[0][1] is None else int(rows[0][1]))

    async def finish_signup(self, idempotency_key: str, key_id: int) -> int:
        await self._fetch("UPDATE admin_signups SET key_id = $2 WHERE idempotency_key = $1 AND key_id IS NULL",
                          idempotency_key, key_id)
        rows = await self._fetch("SELECT key_id FROM admin_signups WHERE idempotency_key = $1", idempotency_key)
        return int(rows[0][0])

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except Exception:  # closing: whatever went wrong, drop the connections
                pool.terminate()


class SqliteKeyMeta(KeyMeta):
    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="newapi-admin-meta")
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            for statement in _SQLITE_TABLES:
                conn.execute(statement)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(self._db()))
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable("sqlite", f"{exc} ({self.path})") from exc

    async def labels(self, key_ids: Sequence[int]) -> dict[int, str]:
        ids = list(key_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = await self._run(lambda db: db.execute(
            f"SELECT key_id, label FROM admin_key_labels WHERE key_id IN ({marks})", ids  # noqa: S608
        ).fetchall())
        return {int(r[0]): str(r[1]) for r in rows}

    async def set_label(self, key_id: int, label: str | None) -> None:
        if label is None:
            await self._run(lambda db: db.execute("DELETE FROM admin_key_labels WHERE key_id = ?", (key_id,)))
        else:
            await self._run(lambda db: db.execute(
                "INSERT INTO admin_key_labels (key_id, label) VALUES (?, ?) "
                "ON CONFLICT (key_id) DO UPDATE SET label = excluded.label", (key_id, label)))

    async def reserve_signup(self, idempotency_key: str, customer_id: int) -> Signup:
        def go(db: sqlite3.Connection) -> Signup:
            db.execute("INSERT OR IGNORE INTO admin_signups (idempotency_key, customer_id) VALUES (?, ?)",
                       (idempotency_key, customer_id))
            row = db.execute("SELECT customer_id, key_id FROM admin_signups WHERE idempotency_key = ?",
                             (idempotency_key,)).fetchone()
            return Signup(idempotency_key, int(row[0]), None if row[1] is None else int(row[1]))

        return await self._run(go)

    async def finish_signup(self, idempotency_key: str, key_id: int) -> int:
        def go(db: sqlite3.Connection) -> int:
            db.execute("UPDATE admin_signups SET key_id = ? WHERE idempotency_key = ? AND key_id IS NULL",
                       (key_id, idempotency_key))
            row = db.execute("SELECT key_id FROM admin_signups WHERE idempotency_key = ?",
                             (idempotency_key,)).fetchone()
            return int(row[0])

        return await self._run(go)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)


def key_meta_for(store: Store) -> KeyMeta:
    """The side tables next to ``store``'s data (same PostgreSQL database or SQLite file)."""
    dsn = getattr(store, "dsn", None)
    if store.backend == "postgres" and isinstance(dsn, str):
        return PostgresKeyMeta(dsn)
    path = getattr(store, "path", None)
    if store.backend == "sqlite" and isinstance(path, str):
        return SqliteKeyMeta(path)
    raise ValueError(f"no admin metadata tables for a {store.backend!r} store")
