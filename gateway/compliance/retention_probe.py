"""The BYOK retention probe: search the gateway's stores for a probe marker.

``newapi compliance-check`` sends a made-up provider key ``sk-probe-<random>`` through the gateway
as a BYOK key, then asks the admin API (``POST /api/v1/admin/compliance/retention-probe``) whether
that string is stored anywhere. :func:`search` looks for three forms of the marker:

* the marker itself (``raw``);
* its SHA-256 as lower-case hex (``sha256-hex``) and, in SQLite, as 32 raw bytes (``sha256``): a
  build that kept a digest of BYOK keys (a cache key, a "never seen this key" table) retains a
  value that identifies the key.

Where it looks:

* **the database**: every column of every table (the gateway's own and any other table in the
  database or SQLite file), through a separate read-only connection. SQLite: ``instr`` over each
  column's bytes; PostgreSQL: the whole row as text (``strpos(t::text, ...)``; ``bytea`` renders as
  hex, so a stored digest shows as its hex form). ``since`` limits the two append-only, time-indexed
  tables (``audit_events.ts``, ``ledger.created_at``) to rows written after it; every other table is
  read whole.
* **Redis** (when configured): every key of the gateway's logical database (``SCAN``) — the key
  names and the values of strings, hashes, lists, sets, sorted sets and streams.

What it cannot see: the process's memory, log files and traces shipped elsewhere, backups, and
rows already deleted but still in database pages (the BYOK isolation tests check the SQLite file
bytes and a ``pg_dump``). It is a check that a given build does not store BYOK keys, not a forensic
tool.

Trade-off: the marker travels to the admin API (trusted, operator-only, on its own listener) and
is compared there; the gateway never stores it. The caller does not send a hash: a hash-only probe
would miss a build that kept the key in another encoding. To keep the endpoint from being an oracle
for real keys, it only accepts markers of the form :data:`MARKER_PATTERN`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MARKER_PATTERN = re.compile(r"^sk-probe-[A-Za-z0-9_-]{16,128}$")
#: Append-only tables with a time index, and their time column (``since`` applies to them).
TIMED_TABLES = {"audit_events": "ts", "ledger": "created_at"}
STATEMENT_TIMEOUT_S = 120


class InvalidMarker(ValueError):
    """The marker does not have the probe form."""


@dataclass(frozen=True, slots=True)
class Hit:
    """The marker (in one form) found in one place."""

    store: str  # "database" or "redis"
    where: str  # table name, or "key:<name>" / "value:<name>"
    form: str  # "raw", "sha256-hex" or "sha256"
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"store": self.store, "where": self.where, "form": self.form, "count": self.count}


@dataclass(slots=True)
class ProbeReport:
    hits: list[Hit] = field(default_factory=list)
    scanned: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.hits)

    def to_json(self) -> dict[str, Any]:
        return {"object": "retention_probe", "found": self.found, "hits": [h.to_json() for h in self.hits],
                "scanned": self.scanned}


def check_marker(marker: Any) -> str:
    """The marker when it has the probe form, else :class:`InvalidMarker` saying what is expected."""
    if not isinstance(marker, str) or not MARKER_PATTERN.match(marker):
        raise InvalidMarker(
            "marker: must be 'sk-probe-' followed by 16-128 letters, digits, '-' or '_' (a made-up key sent "
            "through the gateway as a BYOK key; real keys are never accepted here)"
        )
    return marker


def needles(marker: str) -> list[tuple[str, bytes]]:
    """``(form, bytes)`` of every form looked for."""
    digest = hashlib.sha256(marker.encode()).digest()
    return [("raw", marker.encode()), ("sha256-hex", digest.hex().encode()), ("sha256", digest)]


# -- SQLite --------------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _epoch_us(when: datetime) -> int:
    return int(when.astimezone(UTC).timestamp() * 1_000_000)


def scan_sqlite(path: str, marker: str, since: datetime | None = None) -> tuple[list[Hit], dict[str, Any]]:
    """Search every column of every table of the SQLite file ``path`` (read-only; blocking)."""
    forms = needles(marker)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    hits: list[Hit] = []
    rows_read = 0
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({_quote(table)})")]
            if not columns:
                continue
            sums: list[str] = []
            params: list[Any] = []
            for _, needle in forms:
                cond = " OR ".join(f"instr(CAST({_quote(c)} AS BLOB), ?) > 0" for c in columns)
                sums.append(f"coalesce(sum(CASE WHEN {cond} THEN 1 ELSE 0 END), 0)")
                params.extend([needle] * len(columns))
            where = ""
            time_column = TIMED_TABLES.get(table)
            if since is not None and time_column is not None and time_column in columns:
                where = f" WHERE {_quote(time_column)} >= ?"
                params.append(_epoch_us(since))
            sql = f"SELECT count(*), {', '.join(sums)} FROM {_quote(table)}{where}"  # noqa: S608 - quoted names
            row = conn.execute(sql, params).fetchone()
            rows_read += int(row[0])
            for (form, _), count in zip(forms, row[1:], strict=True):
                if count:
                    hits.append(Hit("database", table, form, int(count)))
        return hits, {"backend": "sqlite", "tables": len(tables), "rows": rows_read}
    finally:
        conn.close()


# -- PostgreSQL ----------------------------------------------------------------------------------


async def scan_postgres(dsn: str, marker: str, since: datetime | None = None) -> tuple[list[Hit], dict[str, Any]]:
    """Search every row (as text) of every table of the database at ``dsn`` (one read-only session)."""
    import asyncpg

    forms = [(form, needle.decode()) for form, needle in needles(marker) if form != "sha256"]
    conn = await asyncpg.connect(dsn, timeout=30)
    hits: list[Hit] = []
    rows_read = 0
    try:
        await conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT_S}s'")
        await conn.execute("SET default_transaction_read_only = on")
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")
        for record in tables:
            schema, table = str(record["table_schema"]), str(record["table_name"])
            columns = {str(r["column_name"]) for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                schema, table)}
            params: list[Any] = [needle for _, needle in forms]
            counts = ", ".join(f"count(*) FILTER (WHERE strpos(t::text, ${i + 1}) > 0)" for i in range(len(forms)))
            where = ""
            time_column = TIMED_TABLES.get(table)
            if since is not None and time_column is not None and time_column in columns:
                params.append(since)
                where = f" WHERE t.{_quote(time_column)} >= ${len(params)}"
            sql = f"SELECT count(*), {counts} FROM {_quote(schema)}.{_quote(table)} AS t{where}"  # noqa: S608
            row = await conn.fetchrow(sql, *params)
            assert row is not None
            rows_read += int(row[0])
            for i, (form, _) in enumerate(forms):
                if row[i + 1]:
                    where_name = table if schema == "public" else f"{schema}.{table}"
                    hits.append(Hit("database", where_name, form, int(row[i + 1])))
        return hits, {"backend": "postgres", "tables": len(tables), "rows": rows_read}
    finally:
        await conn.close()


# -- Redis ---------------------------------------------------------------------------------------


def _values(kind: str, raw: Any) -> list[bytes]:
    if raw is None:
        return []
    if isinstance(raw, bytes):
        return [raw]
    if kind == "hash" and isinstance(raw, dict):
        return [b for kv in raw.items() for b in kv if isinstance(b, bytes)]
    if kind == "stream":
        out: list[bytes] = []
        for entry_id, fields in raw:
            out.append(entry_id if isinstance(entry_id, bytes) else str(entry_id).encode())
            out.extend(b for kv in fields.items() for b in kv if isinstance(b, bytes))
        return out
    if isinstance(raw, (list, set, tuple)):
        return [b if isinstance(b, bytes) else str(b).encode() for b in raw]
    return [str(raw).encode()]


async def scan_redis(url: str, marker: str) -> tuple[list[Hit], dict[str, Any]]:
    """Search the names and values of every key in the logical database of ``url``."""
    import redis.asyncio as aioredis

    forms = needles(marker)
    client = aioredis.from_url(url, socket_timeout=30)
    hits: list[Hit] = []
    keys = 0
    try:
        async for key in client.scan_iter(count=1000):
            keys += 1
            name = key if isinstance(key, bytes) else str(key).encode()
            label = name.decode(errors="replace")
            for form, needle in forms:
                if needle in name:
                    hits.append(Hit("redis", f"key:{label}", form))
            kind = await client.type(name)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            raw: Any
            if kind == "string":
                raw = await client.get(name)
            elif kind == "hash":
                raw = await client.hgetall(name)
            elif kind == "list":
                raw = await client.lrange(name, 0, -1)
            elif kind == "set":
                raw = await client.smembers(name)
            elif kind == "zset":
                raw = await client.zrange(name, 0, -1)
            elif kind == "stream":
                raw = await client.xrange(name)
            else:
                continue
            values = _values(kind, raw)
            for form, needle in forms:
                if any(needle in v for v in values):
                    hits.append(Hit("redis", f"value:{label}", form))
        return hits, {"keys": keys}
    finally:
        await client.aclose()


# -- all stores ----------------------------------------------------------------------------------


async def search(
    marker: str,
    *,
    dsn: str | None = None,
    sqlite_path: str | None = None,
    redis_url: str | None = None,
    since: datetime | None = None,
) -> ProbeReport:
    """Search the configured stores for ``marker`` (validated with :func:`check_marker`)."""
    check_marker(marker)
    report = ProbeReport()
    if dsn is not None:
        hits, scanned = await scan_postgres(dsn, marker, since)
    elif sqlite_path is not None:
        hits, scanned = await asyncio.to_thread(scan_sqlite, sqlite_path, marker, since)
    else:
        hits, scanned = [], {"backend": None}
    report.hits.extend(hits)
    report.scanned["database"] = scanned
    if redis_url is not None:
        hits, scanned = await scan_redis(url=redis_url, marker=marker)
        report.hits.extend(hits)
        report.scanned["redis"] = scanned
    else:
        report.scanned["redis"] = None
    return report
