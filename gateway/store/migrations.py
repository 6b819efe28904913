"""Versioned, forward-only schema migrations for both back ends.

A migration is a numbered list of SQL statements. ``schema_migrations`` records each applied
version with a checksum of its text; a migration whose text changed after it was applied stops
the gateway (fix: never edit a released migration, add a new one).

PostgreSQL: the whole run is one transaction holding ``pg_advisory_xact_lock`` so replicas that
start together apply each migration exactly once (the others wait, then see it applied); it also
works behind a transaction-pooling PgBouncer. SQLite: one ``BEGIN IMMEDIATE`` transaction.

A database that is *ahead* of this gateway (a newer replica migrated it during a rolling update)
is accepted: migrations are additive, and functions carry a version suffix
(``newapi_settle_v1``) so older replicas keep calling the one they know.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newapi_gateway.store.errors import MigrationError

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

#: Any constant works as long as it is the same on every replica; "newapi" in ASCII.
ADVISORY_LOCK_ID = 0x6E6577617069


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        return hashlib.sha256("\n;\n".join(self.statements).encode()).hexdigest()


def check_sequence(migrations: tuple[Migration, ...]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise MigrationError(f"migrations must be numbered 1..n without gaps, got {versions}")


def _plan(
    migrations: tuple[Migration, ...], applied: dict[int, str], target: int | None
) -> list[Migration]:
    check_sequence(migrations)
    head = migrations[-1].version
    target = head if target is None else target
    if not 0 <= target <= head:
        raise MigrationError(f"target version {target} is outside 0..{head}")
    known = {m.version: m for m in migrations}
    for version, checksum in sorted(applied.items()):
        m = known.get(version)
        if m is not None and m.checksum != checksum:
            raise MigrationError(
                f"migration {version} ({m.name}) was changed after it was applied to this database "
                "(checksum mismatch). Released migrations must never be edited: restore its text "
                "and add a new migration instead."
            )
    return [m for m in migrations if m.version not in applied and m.version <= target]


_PG_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate_postgres(
    conn: asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record],
    migrations: tuple[Migration, ...],
    target: int | None = None,
) -> int:
    """Apply pending migrations up to ``target`` (head by default); returns the resulting version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_ID)
        await conn.execute(_PG_LEDGER)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {int(r["version"]): str(r["checksum"]) for r in rows}
        for m in _plan(migrations, applied, target):
            for statement in m.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version, m.name, m.checksum,
            )
            applied[m.version] = m.checksum
    return max(applied, default=0)


_SQLITE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""


def migrate_sqlite(conn: sqlite3.Connection, migrations: tuple[Migration, ...], target: int | None = None) -> int:
    """Apply pending migrations (``conn`` must be in autocommit mode: ``isolation_level=None``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_SQLITE_LEDGER)
        applied = {int(v): str(c) for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")}
        for m in _plan(migrations, applied, target):
            for statement in m.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                (m.version, m.name, m.checksum),
            )
            applied[m.version] = m.checksum
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return max(applied, default=0)
