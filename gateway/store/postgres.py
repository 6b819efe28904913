"""Production store: PostgreSQL (asyncpg) for every durable fact, Redis pub/sub for key invalidation.

Hot path: ``authorize`` and ``settle`` each cost ONE round trip to PostgreSQL (a call to a
versioned PL/pgSQL function taking the batch as one JSON argument) and go through group commit,
so under load one transaction carries many requests. Holds commit asynchronously (the authorize
flusher's connection runs with ``synchronous_commit=off``: a lost hold only un-reserves credit);
debits commit synchronously and ``settle`` returns only after the commit, so an acknowledged
debit survives a gateway SIGKILL and a PostgreSQL crash. See docs/metering.md for the analysis.

Outages: every connection-level failure becomes :class:`StoreUnavailable`; the pool drops its
connections and reconnects on the next call, and migrations are retried lazily if PostgreSQL was
down at start, so the same store object recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from newapi_gateway import jsonutil
from newapi_gateway.store import schema_pg
from newapi_gateway.store.base import (
    Clock,
    Store,
    check_amount,
    check_debit,
    check_id,
    check_key_hash,
    clamp_int32,
    decode_cursor,
    encode_cursor,
    from_epoch_us,
    month_start,
    safe_text,
    to_epoch_us,
)
from newapi_gateway.store.batch import GroupCommitter
from newapi_gateway.store.errors import (
    Conflict,
    IdempotencyConflict,
    InsufficientCredit,
    KeyRefused,
    NotFound,
    SpendingCapExceeded,
    StoreUnavailable,
)
from newapi_gateway.store.invalidation import RedisInvalidationBus
from newapi_gateway.store.keycache import NEGATIVE_MESSAGE, key_message
from newapi_gateway.store.migrations import migrate_postgres
from newapi_gateway.store.models import (
    KEY_STATUSES,
    AuditEvent,
    AuditPage,
    BalanceSnapshot,
    Customer,
    Debit,
    Health,
    Hold,
    KeyRecord,
    KeySettings,
    KeySpend,
    LedgerEntry,
    LedgerKind,
    LedgerPage,
    Settlement,
    Usage,
    UsageRow,
    utcnow,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: A connection checked out of the pool.
    PoolConnection = PoolConnectionProxy[asyncpg.Record]

#: Failures that mean "the server is not there (right now)", never "your query is wrong".
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 admin shutdown, 57P03 cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53300 too many connections, disk full
)

_KEY_SELECT = """
SELECT k.id, k.customer_id, c.external_id, k.prefix, k.status, k.rotation, k.tier, k.rpm, k.tpm,
       k.cap_daily, k.cap_monthly, k.allowed_models, k.expires_at
FROM keys k JOIN customers c ON c.id = k.customer_id
"""

_SERVER_SETTINGS = {"application_name": "newapi-gateway", "jit": "off"}

_USAGE_COLUMNS = "key_id, day, model, requests, input_tokens, output_tokens, cost, estimated_requests"
_USAGE_BY_CUSTOMER = (
    f"SELECT {_USAGE_COLUMNS} FROM usage_daily WHERE customer_id = $1 AND day >= $2 AND day <= $3 "  # noqa: S608
    "ORDER BY day, key_id, model"
)
_USAGE_BY_KEY = (
    f"SELECT {_USAGE_COLUMNS} FROM usage_daily WHERE key_id = $1 AND day >= $2 AND day <= $3 "  # noqa: S608
    "ORDER BY day, key_id, model"
)

_AUTHORIZE_SQL = "SELECT * FROM newapi_authorize_v1($1::json, $2)"
_SETTLE_SQL = "SELECT * FROM newapi_settle_v2($1::json, $2)"
_AUDIT_COLUMNS = (
    "ts, request_id, customer_id, key_id, channel, model, upstream_model, input_tokens, output_tokens, "
    "cost, status, latency_ms, country, decisions, prompt, completion"
)


def _audit_sql(param: int) -> str:
    """INSERT of a JSON batch of audit rows (see :func:`_audit_json`) given as parameter ``$param``."""
    return (
        f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) "  # noqa: S608 - constant text, values are parameters
        "SELECT timestamptz 'epoch' + a.ts * interval '1 microsecond', a.rid, a.cid, a.kid, a.ch, a.m, a.um, "
        "a.it, a.ot, a.cost, a.st, a.lat, a.cc, coalesce(a.dec, '{}')::jsonb, a.pr, a.co "
        f"FROM json_to_recordset(${param}::json) AS a(ts bigint, rid text, cid bigint, kid bigint, ch text, "
        "m text, um text, it bigint, ot bigint, cost bigint, st integer, lat integer, cc text, dec json, "
        "pr text, co text)"
    )


_ADD_AUDIT_SQL = _audit_sql(1)
_SETTLE_WITH_AUDIT_SQL = f"WITH audit AS ({_audit_sql(3)}) {_SETTLE_SQL}"

#: How a NUL character looks in JSON text (both orjson and the stdlib escape it so). The text
#: columns refuse it; a false hit (an escaped backslash followed by "u0000") only costs the slow path.
_JSON_NUL = b"\\u0000"


def _dumps(value: Any) -> str:
    """Compact JSON text: orjson when installed (several times cheaper for the gateway), the stdlib
    for what orjson refuses (a lone surrogate, a non-string key, an integer beyond 64 bits)."""
    try:
        return jsonutil.dumps(value).decode()
    except (TypeError, ValueError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _safe_json(value: Any) -> Any:
    """``decisions`` with every string made database-safe (jsonb refuses \\u0000)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(str(k)): _safe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe_json(v) for v in value]
    return value


def _audit_json(events: Sequence[AuditEvent]) -> str:
    """The audit rows as one JSON array for :func:`_audit_sql`, every string made database-safe.

    Fast path: serialize the fields as they are with orjson and look for an escaped NUL in the
    result; orjson refuses lone surrogates and non-string keys itself. Only a batch holding one of
    those (rare: client-supplied text) pays for cleaning every string first, which stores exactly
    what the fast path would have stored had the text been clean.
    """
    rows = [audit_row(e) for e in events]
    try:
        raw = jsonutil.dumps(rows)
    except (TypeError, ValueError):
        pass
    else:
        if _JSON_NUL not in raw:
            return raw.decode()
    return _dumps([cleaned_audit_row(row) for row in rows])


#: The text columns of an audit row (:func:`audit_row`), cleaned by :func:`cleaned_audit_row`.
_AUDIT_TEXT = ("rid", "ch", "m", "um", "cc", "pr", "co")


def audit_row(e: AuditEvent) -> dict[str, Any]:
    """One element of :func:`_audit_json`'s array, as the event holds it."""
    return {
        "ts": to_epoch_us(e.ts), "rid": e.request_id, "cid": e.customer_id, "kid": e.key_id,
        "ch": e.channel, "m": e.model, "um": e.upstream_model, "it": e.input_tokens,
        "ot": e.output_tokens, "cost": e.cost, "st": clamp_int32(e.status),
        "lat": clamp_int32(e.latency_ms), "cc": e.country, "dec": e.decisions,
        "pr": e.prompt, "co": e.completion,
    }


def cleaned_audit_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every string made database-safe (:func:`safe_text`), in place."""
    for key in _AUDIT_TEXT:
        row[key] = safe_text(row[key])
    row["dec"] = _safe_json(row["dec"])
    return row


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release reset query (an extra round trip per call): this store never
    leaves session state behind (no LISTEN, no session SET, no cursors, transactions closed)."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _key_record(r: asyncpg.Record) -> KeyRecord:
    return KeyRecord(
        id=r[0],
        customer_id=r[1],
        customer_external_id=r[2],
        prefix=r[3],
        status=r[4],
        rotation=r[5],
        settings=KeySettings(
            tier=r[6], rpm=r[7], tpm=r[8], cap_daily=r[9], cap_monthly=r[10],
            allowed_models=tuple(r[11]), expires_at=r[12],
        ),
    )


def _ledger_entry(r: asyncpg.Record) -> LedgerEntry:
    return LedgerEntry(
        id=r["id"], customer_id=r["customer_id"], key_id=r["key_id"], kind=LedgerKind(r["kind"]),
        amount=r["amount"], balance_after=r["balance_after"], idempotency_key=r["idempotency_key"],
        reason=r["reason"], created_at=r["created_at"],
    )


class _DedicatedConnection:
    """One connection owned by a group-commit flusher (at most one flush in flight, so no pool
    checkout per batch). Reconnects on the next use after a failure."""

    def __init__(
        self, dsn: str, connect_timeout: float, command_timeout: float, settings: dict[str, str] | None = None
    ) -> None:
        self._dsn = dsn
        self._settings = {**_SERVER_SETTINGS, **(settings or {})}
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._conn: asyncpg.Connection | None = None

    async def get(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await asyncpg.connect(
                self._dsn,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                server_settings=self._settings,
            )
        return conn

    def drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)
            self._conn = None


@dataclass(slots=True)
class _AuthItem:
    key_id: int
    amount: int
    request_id: str
    unlimited: bool
    expires_at: datetime


@dataclass(slots=True)
class _SettleItem:
    hold: Hold
    cost: int | None  # None = release
    usage: Usage | None
    audit: AuditEvent | None


class PostgresStore(Store):
    """PostgreSQL store; with ``redis_url`` key changes are broadcast to every replica at once."""

    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        redis_url: str | None = None,
        invalidation_channel: str = "newapi:keys",
        key_cache_ttl: float = 1.0,
        clock: Clock = utcnow,
        pool_min: int = 1,
        pool_max: int = 10,
        command_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        max_batch: int = 256,
    ) -> None:
        super().__init__(key_cache_ttl=key_cache_ttl, clock=clock)
        self.dsn = dsn
        self.redis_url = redis_url
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self.migrate_target: int | None = None
        self.bus: RedisInvalidationBus | None = None
        if redis_url is not None:
            self.bus = RedisInvalidationBus(
                redis_url, invalidation_channel, self.key_cache.apply_message, self.key_cache.clear
            )
        # Holds commit without waiting for the WAL flush (see docs/metering.md); debits wait.
        self._auth_conn = _DedicatedConnection(
            dsn, connect_timeout, command_timeout, {"synchronous_commit": "off"}
        )
        self._settle_conn = _DedicatedConnection(dsn, connect_timeout, command_timeout)
        self._auth_batch: GroupCommitter[_AuthItem, Hold] = GroupCommitter(
            self._flush_authorize, max_batch=max_batch, name="pg-authorize"
        )
        self._settle_batch: GroupCommitter[_SettleItem | Debit, Settlement] = GroupCommitter(
            self._flush_settle, max_batch=max_batch, name="pg-settle"
        )

    # -- plumbing ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool and migrate. Raises StoreUnavailable if PostgreSQL is down; the store
        then stays usable and migrates on the first call that finds PostgreSQL back."""
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=self._pool_max,
                command_timeout=self._command_timeout,
                timeout=self._connect_timeout,
                max_inactive_connection_lifetime=60,
                reset=_no_reset,
                server_settings=_SERVER_SETTINGS,
            )
        if self.bus is not None:
            await self.bus.start()
            # Start with a live subscription when Redis is up (it clears the cache when it
            # connects); with Redis down the store still opens, reports degraded, and relies on
            # the cache TTL until the channel is back.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self.bus.wait_subscribed()
        await self._ensure_ready()
        if self._pool_min > 0:
            with contextlib.suppress(StoreUnavailable):
                async with self._acquire():
                    pass

    async def _ensure_ready(self) -> None:
        async with self._ready_lock:
            if self._ready:
                return
            assert self._pool is not None
            try:
                async with self._pool.acquire(timeout=self._connect_timeout) as conn:
                    await migrate_postgres(conn, schema_pg.MIGRATIONS, self.migrate_target)
            except _CONNECTION_ERRORS as exc:
                raise StoreUnavailable("postgresql", _describe(exc)) from exc
            self._ready = True

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[PoolConnection]:
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open: call await store.open() first")
        if not self._ready:
            await self._ensure_ready()
        try:
            async with self._pool.acquire(timeout=self._connect_timeout) as conn:
                yield conn
        except _CONNECTION_ERRORS as exc:
            # Connections opened before an outage are dead: replace them all on next use.
            await self._pool.expire_connections()
            raise StoreUnavailable("postgresql", _describe(exc)) from exc

    async def _hot_fetch(self, holder: _DedicatedConnection, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One statement on a flusher's own connection (no pool checkout)."""
        if not self._ready:
            await self._ensure_ready()
        try:
            conn = await holder.get()
            return list(await conn.fetch(sql, *args))
        except _CONNECTION_ERRORS as exc:
            holder.drop()
            if self._pool is not None:
                await self._pool.expire_connections()
            raise StoreUnavailable("postgresql", _describe(exc)) from exc

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self._acquire() as conn:
            return await conn.fetchrow(sql, *args)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._auth_batch.drain()
            await self._settle_batch.drain()
        if self.bus is not None:
            await self.bus.close()
        await self._auth_conn.close()
        await self._settle_conn.close()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 10)
            self._pool = None

    async def health(self) -> Health:
        components: dict[str, str] = {}
        try:
            await self._fetch("SELECT 1")
            components["postgresql"] = "ok"
        except Exception as exc:  # health never raises
            components["postgresql"] = f"unavailable: {exc}"
        if self.bus is not None:
            components["redis"] = "ok" if self.bus.healthy else f"unavailable: {self.bus.last_error or 'connecting'}"
        healthy = all(v == "ok" for v in components.values())
        return Health("ok" if healthy else "degraded", components)

    async def schema_version(self) -> int:
        row = await self._fetchrow("SELECT max(version) FROM schema_migrations")
        return int(row[0] or 0) if row else 0

    async def _invalidate(self, key_id: int) -> None:
        self.key_cache.invalidate_key(key_id)
        if self.bus is not None:
            await self.bus.publish(key_message(key_id))

    # -- customers -----------------------------------------------------------------------------

    async def upsert_customer(self, external_id: str, display_name: str | None = None) -> Customer:
        check_id("external_id", external_id)
        now = self.clock()
        async with self._acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                INSERT INTO customers (external_id, display_name, created_at, updated_at) VALUES ($1, $2, $3, $3)
                ON CONFLICT (external_id) DO UPDATE SET
                    display_name = coalesce(EXCLUDED.display_name, customers.display_name),
                    updated_at = EXCLUDED.updated_at
                RETURNING id, external_id, display_name, created_at
                """,
                external_id, display_name, now,
            )
            assert row is not None
            await conn.execute(
                "INSERT INTO balances (customer_id, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING", row[0], now
            )
        return Customer(row[0], row[1], row[2], row[3])

    async def get_customer(self, external_id: str) -> Customer | None:
        row = await self._fetchrow(
            "SELECT id, external_id, display_name, created_at FROM customers WHERE external_id = $1", external_id
        )
        return Customer(row[0], row[1], row[2], row[3]) if row else None

    async def get_customer_by_id(self, customer_id: int) -> Customer | None:
        row = await self._fetchrow(
            "SELECT id, external_id, display_name, created_at FROM customers WHERE id = $1", customer_id
        )
        return Customer(row[0], row[1], row[2], row[3]) if row else None

    # -- keys ----------------------------------------------------------------------------------

    @staticmethod
    def _settings_args(s: KeySettings) -> tuple[Any, ...]:
        return (s.tier, s.rpm, s.tpm, s.cap_daily, s.cap_monthly, list(s.allowed_models), s.expires_at)

    async def _key_by_id(self, conn: PoolConnection, key_id: int) -> KeyRecord:
        row = await conn.fetchrow(_KEY_SELECT + " WHERE k.id = $1", key_id)
        if row is None:
            raise NotFound(f"key {key_id} does not exist")
        return _key_record(row)

    async def issue_key(self, customer_id: int, key_hash: bytes, prefix: str, settings: KeySettings) -> KeyRecord:
        check_key_hash(key_hash)
        now = self.clock()
        async with self._acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT 1 FROM customers WHERE id = $1", customer_id) is None:
                raise NotFound(f"customer {customer_id} does not exist; create it first")
            try:
                key_id = await conn.fetchval(
                    """
                    INSERT INTO keys (customer_id, key_hash, prefix, tier, rpm, tpm, cap_daily, cap_monthly,
                                      allowed_models, expires_at, created_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
                    RETURNING id
                    """,
                    customer_id, key_hash, prefix, *self._settings_args(settings), now,
                )
            except asyncpg.UniqueViolationError as exc:
                raise Conflict("a key with this hash already exists; generate a new key") from exc
            await conn.execute("INSERT INTO key_spend (key_id) VALUES ($1) ON CONFLICT DO NOTHING", key_id)
            record = await self._key_by_id(conn, key_id)
        self.key_cache.apply_message(NEGATIVE_MESSAGE)
        if self.bus is not None:
            await self.bus.publish(NEGATIVE_MESSAGE)
        return record

    async def rotate_key(self, key_id: int, key_hash: bytes, prefix: str) -> KeyRecord:
        check_key_hash(key_hash)
        now = self.clock()
        async with self._acquire() as conn, conn.transaction():
            status = await conn.fetchval("SELECT status FROM keys WHERE id = $1 FOR UPDATE", key_id)
            if status is None:
                raise NotFound(f"key {key_id} does not exist")
            if status == "revoked":
                raise Conflict(f"key {key_id} is revoked; issue a new key instead of rotating it")
            try:
                await conn.execute(
                    "UPDATE keys SET key_hash = $2, prefix = $3, rotation = rotation + 1, updated_at = $4 "
                    "WHERE id = $1",
                    key_id, key_hash, prefix, now,
                )
            except asyncpg.UniqueViolationError as exc:
                raise Conflict("a key with this hash already exists; generate a new key") from exc
            record = await self._key_by_id(conn, key_id)
        await self._invalidate(key_id)
        self.key_cache.apply_message(NEGATIVE_MESSAGE)
        if self.bus is not None:
            await self.bus.publish(NEGATIVE_MESSAGE)
        return record

    async def set_key_status(self, key_id: int, status: str) -> KeyRecord:
        if status not in KEY_STATUSES:
            raise ValueError(f"status: must be one of {', '.join(KEY_STATUSES)}, got {status!r}")
        now = self.clock()
        async with self._acquire() as conn, conn.transaction():
            current = await conn.fetchval("SELECT status FROM keys WHERE id = $1 FOR UPDATE", key_id)
            if current is None:
                raise NotFound(f"key {key_id} does not exist")
            if current == "revoked" and status != "revoked":
                raise Conflict(f"key {key_id} is revoked, which is final; issue a new key")
            await conn.execute("UPDATE keys SET status = $2, updated_at = $3 WHERE id = $1", key_id, status, now)
            record = await self._key_by_id(conn, key_id)
        await self._invalidate(key_id)
        return record

    async def update_key(self, key_id: int, settings: KeySettings) -> KeyRecord:
        now = self.clock()
        async with self._acquire() as conn, conn.transaction():
            done = await conn.execute(
                """
                UPDATE keys SET tier = $2, rpm = $3, tpm = $4, cap_daily = $5, cap_monthly = $6, allowed_models = $7,
                                expires_at = $8, updated_at = $9
                WHERE id = $1
                """,
                key_id, *self._settings_args(settings), now,
            )
            if done.endswith(" 0"):
                raise NotFound(f"key {key_id} does not exist")
            record = await self._key_by_id(conn, key_id)
        await self._invalidate(key_id)
        return record

    async def get_key(self, key_id: int) -> KeyRecord | None:
        row = await self._fetchrow(_KEY_SELECT + " WHERE k.id = $1", key_id)
        return _key_record(row) if row else None

    async def list_keys(self, customer_id: int) -> list[KeyRecord]:
        rows = await self._fetch(_KEY_SELECT + " WHERE k.customer_id = $1 ORDER BY k.id", customer_id)
        return [_key_record(r) for r in rows]

    async def lookup_key(self, key_hash: bytes) -> KeyRecord | None:
        row = await self._fetchrow(_KEY_SELECT + " WHERE k.key_hash = $1", key_hash)
        return _key_record(row) if row else None

    # -- authorize -----------------------------------------------------------------------------

    async def authorize(
        self, key: KeyRecord, amount: int, request_id: str, ttl: float, *, unlimited_credit: bool = False
    ) -> Hold:
        check_amount("amount", amount)
        check_id("request_id", request_id)
        expires = self._hold_expiry(self.clock(), ttl)
        return await self._auth_batch.submit(_AuthItem(key.id, amount, request_id, unlimited_credit, expires))

    async def _flush_authorize(self, items: Sequence[_AuthItem]) -> list[Hold | BaseException]:
        payload = _dumps([
            {"r": it.request_id, "k": it.key_id, "a": it.amount, "u": it.unlimited, "e": to_epoch_us(it.expires_at)}
            for it in items
        ])
        rows = await self._hot_fetch(self._auth_conn, _AUTHORIZE_SQL, payload, self.clock())
        out: list[Hold | BaseException] = []
        for it, r in zip(items, rows, strict=True):
            outcome = r["o_outcome"]
            if outcome == 0:
                out.append(Hold(it.request_id, r["o_customer_id"], it.key_id, it.amount, it.expires_at))
            elif outcome == 1:
                out.append(InsufficientCredit(r["o_available"], it.amount))
            elif outcome in (2, 3):
                period = "daily" if outcome == 2 else "monthly"
                out.append(SpendingCapExceeded(period, r["o_cap"], r["o_committed"], it.amount))
            elif outcome == 4:
                out.append(KeyRefused(it.key_id, r["o_reason"]))
            else:
                out.append(Conflict(f"a hold for request {it.request_id!r} already exists; request ids must be unique"))
        return out

    # -- settle / release ----------------------------------------------------------------------

    async def settle(self, hold: Hold, cost: int, usage: Usage, audit: AuditEvent | None = None) -> Settlement:
        check_debit(cost, usage)
        return await self._settle_batch.submit(_SettleItem(hold, cost, usage, audit))

    async def settle_many(self, debits: Sequence[Debit]) -> list[Settlement | BaseException]:
        for d in debits:
            check_debit(d.cost, d.usage)
        return await self._settle_batch.submit_many(debits)  # a Debit is a settle item as it is

    async def release(self, hold: Hold) -> None:
        await self._settle_batch.submit(_SettleItem(hold, None, None, None))

    async def _flush_settle(self, items: Sequence[_SettleItem | Debit]) -> list[Settlement]:
        payload = _dumps([
            {
                "r": it.hold.request_id, "c": it.hold.customer_id, "k": it.hold.key_id, "x": it.cost,
                "m": safe_text(it.usage.model) if it.usage else "", "i": it.usage.input_tokens if it.usage else 0,
                "o": it.usage.output_tokens if it.usage else 0, "s": it.usage.estimated if it.usage else False,
            }
            for it in items
        ])
        audits = [it.audit for it in items if it.audit is not None]
        if audits:
            rows = await self._hot_fetch(
                self._settle_conn, _SETTLE_WITH_AUDIT_SQL, payload, self.clock(), _audit_json(audits)
            )
        else:
            rows = await self._hot_fetch(self._settle_conn, _SETTLE_SQL, payload, self.clock())
        # positional: a compiled class (setup.py) parses keyword arguments ~4x slower, once per debit
        return [
            Settlement(it.hold.request_id, r["o_ledger_id"] or 0, r["o_charged"] or 0, r["o_released"] or 0,
                       r["o_balance_after"] or 0, r["o_outcome"] == 1)
            for it, r in zip(items, rows, strict=True)
        ]

    async def expire_holds(self, now: datetime | None = None, limit: int = 1000) -> int:
        count = await self._fetchrow("SELECT newapi_expire_holds_v1($1, $2)", now or self.clock(), limit)
        return int(count[0]) if count else 0

    # -- credit --------------------------------------------------------------------------------

    async def top_up(self, customer_id: int, amount: int, idempotency_key: str, reason: str) -> LedgerEntry:
        check_amount("amount", amount, minimum=1)
        return await self._credit(customer_id, LedgerKind.TOP_UP, amount, idempotency_key, reason)

    async def adjust(self, customer_id: int, amount: int, idempotency_key: str, reason: str) -> LedgerEntry:
        check_amount("amount", abs(amount), minimum=1)
        return await self._credit(customer_id, LedgerKind.ADJUST, amount, idempotency_key, reason)

    async def _credit(
        self, customer_id: int, kind: LedgerKind, amount: int, idempotency_key: str, reason: str
    ) -> LedgerEntry:
        check_id("idempotency_key", idempotency_key)
        r = await self._fetchrow(
            "SELECT * FROM newapi_credit_v1($1, $2::smallint, $3, $4, $5, $6)",
            customer_id, int(kind), amount, idempotency_key, reason, self.clock(),
        )
        assert r is not None
        if r["o_outcome"] == 3:
            raise NotFound(f"customer {customer_id} does not exist")
        if r["o_outcome"] == 2:
            raise IdempotencyConflict(idempotency_key, r["o_amount"], amount)
        return LedgerEntry(
            id=r["o_id"], customer_id=customer_id, key_id=None, kind=LedgerKind(r["o_kind"]), amount=r["o_amount"],
            balance_after=r["o_balance_after"], idempotency_key=idempotency_key, reason=r["o_reason"],
            created_at=r["o_created_at"],
        )

    # -- reads ---------------------------------------------------------------------------------

    async def balance(self, customer_id: int) -> BalanceSnapshot:
        now = self.clock()
        today = now.date()
        row = await self._fetchrow(
            """
            SELECT b.balance, b.held,
                   coalesce((SELECT sum(u.cost) FROM usage_daily u WHERE u.customer_id = $1 AND u.day = $2), 0),
                   coalesce((SELECT sum(u.requests) FROM usage_daily u WHERE u.customer_id = $1 AND u.day = $2), 0),
                   coalesce((SELECT sum(u.cost) FROM usage_daily u
                             WHERE u.customer_id = $1 AND u.day >= $3 AND u.day <= $2), 0)
            FROM balances b WHERE b.customer_id = $1
            """,
            customer_id, today, month_start(today),
        )
        if row is None:
            raise NotFound(f"customer {customer_id} does not exist")
        return BalanceSnapshot(customer_id, row[0], row[1], int(row[2]), int(row[4]), int(row[3]), now)

    async def key_spend(self, key_id: int) -> KeySpend:
        today = self._today()
        row = await self._fetchrow(
            "SELECT held, day, day_spent, day_requests, month, month_spent FROM key_spend WHERE key_id = $1", key_id
        )
        if row is None:
            return KeySpend(key_id, 0, 0, 0, 0)
        same_day = row["day"] == today
        return KeySpend(
            key_id,
            spent_today=row["day_spent"] if same_day else 0,
            spent_this_month=row["month_spent"] if row["month"] == month_start(today) else 0,
            held=row["held"],
            requests_today=row["day_requests"] if same_day else 0,
        )

    async def list_ledger(self, customer_id: int, cursor: str | None = None, limit: int = 100) -> LedgerPage:
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit: must be 1..1000, got {limit}")
        before = decode_cursor(cursor, 1)[0] if cursor else 2**62
        rows = await self._fetch(
            "SELECT id, customer_id, key_id, kind, amount, balance_after, idempotency_key, reason, created_at "
            "FROM ledger WHERE customer_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            customer_id, before, limit,
        )
        entries = [_ledger_entry(r) for r in rows]
        next_cursor = encode_cursor(entries[-1].id) if len(entries) == limit else None
        return LedgerPage(entries, next_cursor)

    async def usage(
        self, *, start: date, end: date, customer_id: int | None = None, key_id: int | None = None
    ) -> list[UsageRow]:
        if (customer_id is None) == (key_id is None):
            raise ValueError("usage: pass exactly one of customer_id or key_id")
        sql = _USAGE_BY_CUSTOMER if customer_id is not None else _USAGE_BY_KEY
        rows = await self._fetch(sql, customer_id if customer_id is not None else key_id, start, end)
        return [UsageRow(*r) for r in rows]

    # -- audit ---------------------------------------------------------------------------------

    async def add_audit_events(self, events: Sequence[AuditEvent]) -> None:
        if events:
            async with self._acquire() as conn:
                await conn.execute(_ADD_AUDIT_SQL, _audit_json(events))

    async def query_audit(
        self,
        *,
        since: datetime,
        until: datetime,
        customer_id: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> AuditPage:
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit: must be 1..10000, got {limit}")
        sql = f"SELECT id, {_AUDIT_COLUMNS} FROM audit_events WHERE ts >= $1 AND ts < $2"  # noqa: S608
        args: list[Any] = [since, until]
        if cursor:
            after_us, after_id = decode_cursor(cursor, 2)
            args += [from_epoch_us(after_us), after_id]
            sql += " AND (ts, id) > ($3, $4)"
        if customer_id is not None:
            args.append(customer_id)
            sql += f" AND customer_id = ${len(args)}"
        args.append(limit)
        sql += f" ORDER BY ts, id LIMIT ${len(args)}"
        rows = await self._fetch(sql, *args)
        events = [
            AuditEvent(
                id=r["id"], ts=r["ts"], request_id=r["request_id"], customer_id=r["customer_id"], key_id=r["key_id"],
                channel=r["channel"], model=r["model"], upstream_model=r["upstream_model"],
                input_tokens=r["input_tokens"], output_tokens=r["output_tokens"], cost=r["cost"],
                status=r["status"], latency_ms=r["latency_ms"], country=r["country"],
                decisions=json.loads(r["decisions"]), prompt=r["prompt"], completion=r["completion"],
            )
            for r in rows
        ]
        next_cursor = None
        if len(events) == limit:
            last = events[-1]
            assert last.id is not None
            next_cursor = encode_cursor(to_epoch_us(last.ts), last.id)
        return AuditPage(events, next_cursor)

    async def delete_audit_batch(self, before: datetime, batch_size: int = 1000) -> int:
        async with self._acquire() as conn:
            done = await conn.execute(
                "DELETE FROM audit_events WHERE id IN "
                "(SELECT id FROM audit_events WHERE ts < $1 ORDER BY ts LIMIT $2)",
                before, batch_size,
            )
        return int(done.split()[-1])

