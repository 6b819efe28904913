"""Embedded store: SQLite in WAL mode, one process (the default without a PostgreSQL DSN).

All database work runs on ONE dedicated thread with one connection (``sqlite3`` in autocommit
mode, explicit ``BEGIN IMMEDIATE``), so every transaction is serialized: concurrent
authorizations cannot overspend. Each operation is one hop to that thread; ``authorize`` and
``settle`` group-commit, so under load one transaction (and one fsync) carries many requests.

Durability: ``synchronous=FULL`` (default) makes a committed debit survive power loss;
``NORMAL`` survives a process SIGKILL but may lose the last commits on power loss.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from newapi_gateway.store import schema_sqlite
from newapi_gateway.store.base import (
    Clock,
    Store,
    check_amount,
    check_debit,
    check_id,
    check_key_hash,
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
from newapi_gateway.store.keycache import NEGATIVE_MESSAGE
from newapi_gateway.store.migrations import migrate_sqlite
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

T = TypeVar("T")

_UNAVAILABLE_MARKERS = ("database is locked", "disk i/o error", "unable to open", "disk is full", "readonly")

_KEY_SELECT = """
SELECT k.id, k.customer_id, c.external_id, k.prefix, k.status, k.rotation, k.tier, k.rpm, k.tpm,
       k.cap_daily, k.cap_monthly, k.allowed_models, k.expires_at
FROM keys k JOIN customers c ON c.id = k.customer_id
"""

_USAGE_COLUMNS = "key_id, day, model, requests, input_tokens, output_tokens, cost, estimated_requests"
_USAGE_BY_CUSTOMER = (
    f"SELECT {_USAGE_COLUMNS} FROM usage_daily WHERE customer_id = ? AND day >= ? AND day <= ? "  # noqa: S608
    "ORDER BY day, key_id, model"
)
_USAGE_BY_KEY = (
    f"SELECT {_USAGE_COLUMNS} FROM usage_daily WHERE key_id = ? AND day >= ? AND day <= ? "  # noqa: S608
    "ORDER BY day, key_id, model"
)

_AUDIT_COLUMNS = (
    "ts, request_id, customer_id, key_id, channel, model, upstream_model, input_tokens, output_tokens, "
    "cost, status, latency_ms, country, decisions, prompt, completion"
)


_us = to_epoch_us
_dt = from_epoch_us


def _key_record(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        id=row[0],
        customer_id=row[1],
        customer_external_id=row[2],
        prefix=row[3],
        status=row[4],
        rotation=row[5],
        settings=KeySettings(
            tier=row[6],
            rpm=row[7],
            tpm=row[8],
            cap_daily=row[9],
            cap_monthly=row[10],
            allowed_models=tuple(json.loads(row[11])),
            expires_at=_dt(row[12]) if row[12] is not None else None,
        ),
    )


def _ledger_entry(row: Sequence[Any]) -> LedgerEntry:
    return LedgerEntry(
        id=row[0], customer_id=row[1], key_id=row[2], kind=LedgerKind(row[3]), amount=row[4],
        balance_after=row[5], idempotency_key=row[6], reason=row[7], created_at=_dt(row[8]),
    )


def _audit_params(e: AuditEvent) -> tuple[Any, ...]:
    return (
        _us(e.ts), safe_text(e.request_id), e.customer_id, e.key_id, safe_text(e.channel), safe_text(e.model),
        safe_text(e.upstream_model), e.input_tokens, e.output_tokens, e.cost, e.status, e.latency_ms,
        safe_text(e.country), json.dumps(e.decisions, separators=(",", ":"), sort_keys=True),
        safe_text(e.prompt), safe_text(e.completion),
    )


@dataclass(slots=True)
class _AuthItem:
    key_id: int
    amount: int
    request_id: str
    unlimited: bool
    now: datetime
    expires_at: datetime


@dataclass(slots=True)
class _SettleItem:
    hold: Hold
    cost: int | None  # None = release
    usage: Usage | None
    audit: AuditEvent | None
    now: datetime


class SqliteStore(Store):
    """The embedded store. ``path`` is a file (``:memory:`` works for throwaway use)."""

    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        key_cache_ttl: float = 1.0,
        clock: Clock = utcnow,
        busy_timeout_ms: int = 5000,
        max_batch: int = 256,
    ) -> None:
        super().__init__(key_cache_ttl=key_cache_ttl, clock=clock)
        self.path = str(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._auth_batch: GroupCommitter[_AuthItem, Hold] = GroupCommitter(
            self._flush_authorize, max_batch=max_batch, name="sqlite-authorize"
        )
        self._settle_batch: GroupCommitter[_SettleItem, Settlement] = GroupCommitter(
            self._flush_settle, max_batch=max_batch, name="sqlite-settle"
        )
        self.migrate_target: int | None = None

    # -- plumbing ------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("SqliteStore is not open: call await store.open() first")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if any(marker in text for marker in _UNAVAILABLE_MARKERS):
                raise StoreUnavailable("sqlite", f"{exc} ({self.path})") from exc
            raise

    async def _run_tx(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in one transaction on the worker thread."""
        return cast(T, await self._run(self._tx, fn, *args))

    @property
    def db(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` inside BEGIN IMMEDIATE ... COMMIT on the worker thread."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(*args)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return result

    def _connect(self) -> int:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        self._conn = conn
        return migrate_sqlite(conn, schema_sqlite.MIGRATIONS, self.migrate_target)

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="newapi-sqlite")
        try:
            # Another process (a gateway still shutting down) may hold the file for a moment;
            # SQLite can refuse some lock upgrades at once instead of waiting (deadlock avoidance).
            for attempt in range(50):
                try:
                    await self._run(self._connect)
                    break
                except StoreUnavailable:
                    if self._conn is not None:
                        await self._run(self._conn.close)
                        self._conn = None
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.1)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._auth_batch.drain()
        await self._settle_batch.drain()
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
        self._executor = None

    async def health(self) -> Health:
        try:
            await self._run(lambda: self.db.execute("SELECT 1").fetchone())
        except Exception as exc:  # health never raises
            return Health("degraded", {"sqlite": f"unavailable: {exc}"})
        return Health("ok", {"sqlite": "ok"})

    async def schema_version(self) -> int:
        row = await self._run(lambda: self.db.execute("SELECT max(version) FROM schema_migrations").fetchone())
        return int(row[0] or 0)

    # -- customers -----------------------------------------------------------------------------

    async def upsert_customer(self, external_id: str, display_name: str | None = None) -> Customer:
        check_id("external_id", external_id)
        now = _us(self.clock())

        def go() -> Customer:
            row = self.db.execute(
                """
                INSERT INTO customers (external_id, display_name, created_at, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (external_id) DO UPDATE SET
                    display_name = coalesce(excluded.display_name, customers.display_name),
                    updated_at = excluded.updated_at
                RETURNING id, external_id, display_name, created_at
                """,
                (external_id, display_name, now, now),
            ).fetchone()
            self.db.execute(
                "INSERT OR IGNORE INTO balances (customer_id, updated_at) VALUES (?, ?)", (row[0], now)
            )
            return Customer(row[0], row[1], row[2], _dt(row[3]))

        return await self._run_tx(go)

    async def get_customer(self, external_id: str) -> Customer | None:
        row = await self._run(lambda: self.db.execute(
            "SELECT id, external_id, display_name, created_at FROM customers WHERE external_id = ?", (external_id,)
        ).fetchone())
        return Customer(row[0], row[1], row[2], _dt(row[3])) if row else None

    async def get_customer_by_id(self, customer_id: int) -> Customer | None:
        row = await self._run(lambda: self.db.execute(
            "SELECT id, external_id, display_name, created_at FROM customers WHERE id = ?", (customer_id,)
        ).fetchone())
        return Customer(row[0], row[1], row[2], _dt(row[3])) if row else None

    # -- keys ----------------------------------------------------------------------------------

    def _get_key(self, key_id: int) -> KeyRecord | None:
        row = self.db.execute(_KEY_SELECT + " WHERE k.id = ?", (key_id,)).fetchone()
        return _key_record(row) if row else None

    def _must_key(self, key_id: int) -> KeyRecord:
        record = self._get_key(key_id)
        if record is None:
            raise NotFound(f"key {key_id} does not exist")
        return record

    async def issue_key(self, customer_id: int, key_hash: bytes, prefix: str, settings: KeySettings) -> KeyRecord:
        check_key_hash(key_hash)
        now = _us(self.clock())

        def go() -> KeyRecord:
            if self.db.execute("SELECT 1 FROM customers WHERE id = ?", (customer_id,)).fetchone() is None:
                raise NotFound(f"customer {customer_id} does not exist; create it first")
            try:
                cur = self.db.execute(
                    """
                    INSERT INTO keys (customer_id, key_hash, prefix, tier, rpm, tpm, cap_daily, cap_monthly,
                                      allowed_models, expires_at, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    (customer_id, key_hash, prefix, *self._settings_params(settings), now, now),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict("a key with this hash already exists; generate a new key") from exc
            key_id = int(cur.lastrowid or 0)
            self.db.execute("INSERT OR IGNORE INTO key_spend (key_id) VALUES (?)", (key_id,))
            return self._must_key(key_id)

        record = await self._run_tx(go)
        self.key_cache.apply_message(NEGATIVE_MESSAGE)
        return record

    @staticmethod
    def _settings_params(s: KeySettings) -> tuple[Any, ...]:
        return (
            s.tier, s.rpm, s.tpm, s.cap_daily, s.cap_monthly, json.dumps(list(s.allowed_models)),
            _us(s.expires_at) if s.expires_at is not None else None,
        )

    async def rotate_key(self, key_id: int, key_hash: bytes, prefix: str) -> KeyRecord:
        check_key_hash(key_hash)
        now = _us(self.clock())

        def go() -> KeyRecord:
            current = self._must_key(key_id)
            if current.status == "revoked":
                raise Conflict(f"key {key_id} is revoked; issue a new key instead of rotating it")
            try:
                self.db.execute(
                    "UPDATE keys SET key_hash = ?, prefix = ?, rotation = rotation + 1, updated_at = ? WHERE id = ?",
                    (key_hash, prefix, now, key_id),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict("a key with this hash already exists; generate a new key") from exc
            return self._must_key(key_id)

        record = await self._run_tx(go)
        self._invalidate(key_id)
        self.key_cache.apply_message(NEGATIVE_MESSAGE)
        return record

    async def set_key_status(self, key_id: int, status: str) -> KeyRecord:
        if status not in KEY_STATUSES:
            raise ValueError(f"status: must be one of {', '.join(KEY_STATUSES)}, got {status!r}")
        now = _us(self.clock())

        def go() -> KeyRecord:
            current = self._must_key(key_id)
            if current.status == "revoked" and status != "revoked":
                raise Conflict(f"key {key_id} is revoked, which is final; issue a new key")
            self.db.execute("UPDATE keys SET status = ?, updated_at = ? WHERE id = ?", (status, now, key_id))
            return self._must_key(key_id)

        record = await self._run_tx(go)
        self._invalidate(key_id)
        return record

    async def update_key(self, key_id: int, settings: KeySettings) -> KeyRecord:
        now = _us(self.clock())

        def go() -> KeyRecord:
            self._must_key(key_id)
            self.db.execute(
                """
                UPDATE keys SET tier = ?, rpm = ?, tpm = ?, cap_daily = ?, cap_monthly = ?, allowed_models = ?,
                                expires_at = ?, updated_at = ?
                WHERE id = ?
                """,
                (*self._settings_params(settings), now, key_id),
            )
            return self._must_key(key_id)

        record = await self._run_tx(go)
        self._invalidate(key_id)
        return record

    def _invalidate(self, key_id: int) -> None:
        # Embedded mode is one process: invalidation is immediate and local.
        self.key_cache.invalidate_key(key_id)

    async def get_key(self, key_id: int) -> KeyRecord | None:
        return await self._run(self._get_key, key_id)

    async def list_keys(self, customer_id: int) -> list[KeyRecord]:
        rows = await self._run(lambda: self.db.execute(
            _KEY_SELECT + " WHERE k.customer_id = ? ORDER BY k.id", (customer_id,)
        ).fetchall())
        return [_key_record(r) for r in rows]

    async def lookup_key(self, key_hash: bytes) -> KeyRecord | None:
        row = await self._run(lambda: self.db.execute(_KEY_SELECT + " WHERE k.key_hash = ?", (key_hash,)).fetchone())
        return _key_record(row) if row else None

    # -- authorize -----------------------------------------------------------------------------

    async def authorize(
        self, key: KeyRecord, amount: int, request_id: str, ttl: float, *, unlimited_credit: bool = False
    ) -> Hold:
        check_amount("amount", amount)
        check_id("request_id", request_id)
        now = self.clock()
        item = _AuthItem(key.id, amount, request_id, unlimited_credit, now, self._hold_expiry(now, ttl))
        return await self._auth_batch.submit(item)

    async def _flush_authorize(self, items: Sequence[_AuthItem]) -> list[Hold | BaseException]:
        return await self._run_tx(self._authorize_items, items)

    def _authorize_items(self, items: Sequence[_AuthItem]) -> list[Hold | BaseException]:
        out: list[Hold | BaseException] = []
        for it in items:
            out.append(self._authorize_one(it))
        return out

    def _authorize_one(self, it: _AuthItem) -> Hold | BaseException:
        db = self.db
        k = db.execute(
            "SELECT customer_id, status, expires_at, cap_daily, cap_monthly FROM keys WHERE id = ?", (it.key_id,)
        ).fetchone()
        if k is None:
            return KeyRefused(it.key_id, "unknown")
        customer_id, status, expires_at, cap_daily, cap_monthly = k
        now_us = _us(it.now)
        if status != "active":
            return KeyRefused(it.key_id, status)
        if expires_at is not None and expires_at <= now_us:
            return KeyRefused(it.key_id, "expired")
        balance, held = db.execute(
            "SELECT balance, held FROM balances WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        available = balance - held
        if not it.unlimited and available < it.amount:
            return InsufficientCredit(available, it.amount)
        if cap_daily is not None or cap_monthly is not None:
            today = it.now.date()
            spend = db.execute(
                "SELECT held, day, day_spent, month, month_spent FROM key_spend WHERE key_id = ?", (it.key_id,)
            ).fetchone() or (0, "", 0, "", 0)
            s_held, s_day, s_day_spent, s_month, s_month_spent = spend
            if cap_daily is not None:
                committed = s_held + (s_day_spent if s_day == today.isoformat() else 0)
                if committed + it.amount > cap_daily:
                    return SpendingCapExceeded("daily", cap_daily, committed, it.amount)
            if cap_monthly is not None:
                committed = s_held + (s_month_spent if s_month == month_start(today).isoformat() else 0)
                if committed + it.amount > cap_monthly:
                    return SpendingCapExceeded("monthly", cap_monthly, committed, it.amount)
        try:
            db.execute(
                "INSERT INTO holds (request_id, customer_id, key_id, amount, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (it.request_id, customer_id, it.key_id, it.amount, now_us, _us(it.expires_at)),
            )
        except sqlite3.IntegrityError:
            return Conflict(f"a hold for request {it.request_id!r} already exists; request ids must be unique")
        db.execute("UPDATE balances SET held = held + ? WHERE customer_id = ?", (it.amount, customer_id))
        db.execute(
            "INSERT INTO key_spend (key_id, held) VALUES (?, ?) "
            "ON CONFLICT (key_id) DO UPDATE SET held = held + excluded.held",
            (it.key_id, it.amount),
        )
        return Hold(it.request_id, customer_id, it.key_id, it.amount, it.expires_at)

    # -- settle / release ----------------------------------------------------------------------

    async def settle(self, hold: Hold, cost: int, usage: Usage, audit: AuditEvent | None = None) -> Settlement:
        check_debit(cost, usage)
        return await self._settle_batch.submit(_SettleItem(hold, cost, usage, audit, self.clock()))

    async def settle_many(self, debits: Sequence[Debit]) -> list[Settlement | BaseException]:
        now = self.clock()
        for d in debits:
            check_debit(d.cost, d.usage)
        items = [_SettleItem(d.hold, d.cost, d.usage, d.audit, now) for d in debits]
        return await self._settle_batch.submit_many(items)

    async def release(self, hold: Hold) -> None:
        await self._settle_batch.submit(_SettleItem(hold, None, None, None, self.clock()))

    async def _flush_settle(self, items: Sequence[_SettleItem]) -> list[Settlement]:
        return await self._run_tx(self._settle_items, items)

    def _settle_items(self, items: Sequence[_SettleItem]) -> list[Settlement]:
        out = [self._settle_one(it) for it in items]
        audits = [it.audit for it in items if it.audit is not None]
        if audits:
            self._insert_audit(audits)
        return out

    def _settle_one(self, it: _SettleItem) -> Settlement:
        db = self.db
        h = it.hold
        row = db.execute("DELETE FROM holds WHERE request_id = ? RETURNING amount", (h.request_id,)).fetchone()
        held = 0
        if row is not None:
            held = int(row[0])
            db.execute("UPDATE balances SET held = held - ? WHERE customer_id = ?", (held, h.customer_id))
            db.execute("UPDATE key_spend SET held = max(held - ?, 0) WHERE key_id = ?", (held, h.key_id))
        if it.cost is None:
            bal = db.execute("SELECT balance FROM balances WHERE customer_id = ?", (h.customer_id,)).fetchone()
            return Settlement(h.request_id, 0, 0, held, int(bal[0]) if bal else 0, duplicate=False)
        cost = it.cost
        now_us = _us(it.now)
        existing = db.execute(
            "SELECT id, amount, balance_after FROM ledger WHERE customer_id = ? AND idempotency_key = ?",
            (h.customer_id, h.request_id),
        ).fetchone()
        if existing is not None:
            return Settlement(h.request_id, existing[0], -existing[1], held, existing[2], duplicate=True)
        (balance,) = db.execute(
            "UPDATE balances SET balance = balance - ?, updated_at = ? WHERE customer_id = ? RETURNING balance",
            (cost, now_us, h.customer_id),
        ).fetchone()
        cur = db.execute(
            "INSERT INTO ledger (customer_id, key_id, kind, amount, balance_after, idempotency_key, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (h.customer_id, h.key_id, int(LedgerKind.DEBIT), -cost, balance, h.request_id, now_us),
        )
        today = it.now.date()
        day, month = today.isoformat(), month_start(today).isoformat()
        db.execute(
            """
            INSERT INTO key_spend (key_id, day, day_spent, day_requests, month, month_spent)
            VALUES (?, ?, ?, 1, ?, ?)
            ON CONFLICT (key_id) DO UPDATE SET
                day_spent = CASE WHEN day = excluded.day THEN day_spent + excluded.day_spent
                                 ELSE excluded.day_spent END,
                day_requests = CASE WHEN day = excluded.day THEN day_requests + 1 ELSE 1 END,
                day = excluded.day,
                month_spent = CASE WHEN month = excluded.month THEN month_spent + excluded.month_spent
                                   ELSE excluded.month_spent END,
                month = excluded.month
            """,
            (h.key_id, day, cost, month, cost),
        )
        assert it.usage is not None
        u = it.usage
        db.execute(
            """
            INSERT INTO usage_daily (key_id, day, model, customer_id, requests, input_tokens, output_tokens, cost,
                                     estimated_requests)
            VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)
            ON CONFLICT (key_id, day, model) DO UPDATE SET
                requests = requests + 1,
                input_tokens = input_tokens + excluded.input_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                cost = cost + excluded.cost,
                estimated_requests = estimated_requests + excluded.estimated_requests
            """,
            (h.key_id, day, safe_text(u.model), h.customer_id, u.input_tokens, u.output_tokens, cost,
             int(u.estimated)),
        )
        return Settlement(h.request_id, int(cur.lastrowid or 0), cost, max(held - cost, 0), balance, duplicate=False)

    async def expire_holds(self, now: datetime | None = None, limit: int = 1000) -> int:
        cutoff = _us(now or self.clock())

        def go() -> int:
            rows = self.db.execute(
                "DELETE FROM holds WHERE request_id IN "
                "(SELECT request_id FROM holds WHERE expires_at <= ? ORDER BY expires_at LIMIT ?) "
                "RETURNING customer_id, key_id, amount",
                (cutoff, limit),
            ).fetchall()
            for customer_id, key_id, amount in rows:
                self.db.execute("UPDATE balances SET held = held - ? WHERE customer_id = ?", (amount, customer_id))
                self.db.execute("UPDATE key_spend SET held = max(held - ?, 0) WHERE key_id = ?", (amount, key_id))
            return len(rows)

        return await self._run_tx(go)

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
        now = _us(self.clock())

        def go() -> LedgerEntry:
            db = self.db
            bal = db.execute("SELECT balance FROM balances WHERE customer_id = ?", (customer_id,)).fetchone()
            if bal is None:
                raise NotFound(f"customer {customer_id} does not exist")
            existing = db.execute(
                "SELECT id, customer_id, key_id, kind, amount, balance_after, idempotency_key, reason, created_at "
                "FROM ledger WHERE customer_id = ? AND idempotency_key = ?",
                (customer_id, idempotency_key),
            ).fetchone()
            if existing is not None:
                entry = _ledger_entry(existing)
                if entry.kind != kind or entry.amount != amount:
                    raise IdempotencyConflict(idempotency_key, entry.amount, amount)
                return entry
            balance = int(bal[0]) + amount
            db.execute("UPDATE balances SET balance = ?, updated_at = ? WHERE customer_id = ?",
                       (balance, now, customer_id))
            cur = db.execute(
                "INSERT INTO ledger (customer_id, kind, amount, balance_after, idempotency_key, reason, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (customer_id, int(kind), amount, balance, idempotency_key, reason, now),
            )
            return LedgerEntry(int(cur.lastrowid or 0), customer_id, None, kind, amount, balance,
                               idempotency_key, reason, _dt(now))

        return await self._run_tx(go)

    # -- reads ---------------------------------------------------------------------------------

    async def balance(self, customer_id: int) -> BalanceSnapshot:
        now = self.clock()
        today = now.date()

        def go() -> BalanceSnapshot:
            bal = self.db.execute("SELECT balance, held FROM balances WHERE customer_id = ?", (customer_id,)).fetchone()
            if bal is None:
                raise NotFound(f"customer {customer_id} does not exist")
            day_cost, day_requests = self.db.execute(
                "SELECT coalesce(sum(cost), 0), coalesce(sum(requests), 0) FROM usage_daily "
                "WHERE customer_id = ? AND day = ?",
                (customer_id, today.isoformat()),
            ).fetchone()
            (month_cost,) = self.db.execute(
                "SELECT coalesce(sum(cost), 0) FROM usage_daily WHERE customer_id = ? AND day >= ? AND day <= ?",
                (customer_id, month_start(today).isoformat(), today.isoformat()),
            ).fetchone()
            return BalanceSnapshot(customer_id, bal[0], bal[1], day_cost, month_cost, day_requests, now)

        return await self._run(go)

    async def key_spend(self, key_id: int) -> KeySpend:
        today = self._today()
        row = await self._run(lambda: self.db.execute(
            "SELECT held, day, day_spent, day_requests, month, month_spent FROM key_spend WHERE key_id = ?", (key_id,)
        ).fetchone())
        if row is None:
            return KeySpend(key_id, 0, 0, 0, 0)
        held, day, day_spent, day_requests, month, month_spent = row
        same_day = day == today.isoformat()
        return KeySpend(
            key_id,
            spent_today=day_spent if same_day else 0,
            spent_this_month=month_spent if month == month_start(today).isoformat() else 0,
            held=held,
            requests_today=day_requests if same_day else 0,
        )

    async def list_ledger(self, customer_id: int, cursor: str | None = None, limit: int = 100) -> LedgerPage:
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit: must be 1..1000, got {limit}")
        before = decode_cursor(cursor, 1)[0] if cursor else 2**62
        rows = await self._run(lambda: self.db.execute(
            "SELECT id, customer_id, key_id, kind, amount, balance_after, idempotency_key, reason, created_at "
            "FROM ledger WHERE customer_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (customer_id, before, limit),
        ).fetchall())
        entries = [_ledger_entry(r) for r in rows]
        next_cursor = encode_cursor(entries[-1].id) if len(entries) == limit else None
        return LedgerPage(entries, next_cursor)

    async def usage(
        self, *, start: date, end: date, customer_id: int | None = None, key_id: int | None = None
    ) -> list[UsageRow]:
        if (customer_id is None) == (key_id is None):
            raise ValueError("usage: pass exactly one of customer_id or key_id")
        sql = _USAGE_BY_CUSTOMER if customer_id is not None else _USAGE_BY_KEY
        value = customer_id if customer_id is not None else key_id
        rows = await self._run(
            lambda: self.db.execute(sql, (value, start.isoformat(), end.isoformat())).fetchall()
        )
        return [UsageRow(r[0], date.fromisoformat(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]

    # -- audit ---------------------------------------------------------------------------------

    def _insert_audit(self, events: Sequence[AuditEvent]) -> None:
        self.db.executemany(
            f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) VALUES ({', '.join('?' * 16)})",  # noqa: S608
            [_audit_params(e) for e in events],
        )

    async def add_audit_events(self, events: Sequence[AuditEvent]) -> None:
        if events:
            await self._run_tx(self._insert_audit, list(events))

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
        sql = f"SELECT id, {_AUDIT_COLUMNS} FROM audit_events WHERE ts >= ? AND ts < ?"  # noqa: S608
        params: list[Any] = [_us(since), _us(until)]
        if cursor:
            after_ts, after_id = decode_cursor(cursor, 2)
            sql += " AND (ts > ? OR (ts = ? AND id > ?))"
            params += [after_ts, after_ts, after_id]
        if customer_id is not None:
            sql += " AND customer_id = ?"
            params.append(customer_id)
        sql += " ORDER BY ts, id LIMIT ?"
        params.append(limit)
        rows = await self._run(lambda: self.db.execute(sql, params).fetchall())
        events = [
            AuditEvent(
                id=r[0], ts=_dt(r[1]), request_id=r[2], customer_id=r[3], key_id=r[4], channel=r[5], model=r[6],
                upstream_model=r[7], input_tokens=r[8], output_tokens=r[9], cost=r[10], status=r[11],
                latency_ms=r[12], country=r[13], decisions=json.loads(r[14]), prompt=r[15], completion=r[16],
            )
            for r in rows
        ]
        next_cursor = None
        if len(events) == limit:
            last = events[-1]
            assert last.id is not None
            next_cursor = encode_cursor(_us(last.ts), last.id)
        return AuditPage(events, next_cursor)

    async def delete_audit_batch(self, before: datetime, batch_size: int = 1000) -> int:
        cutoff = _us(before)

        def go() -> int:
            cur = self.db.execute(
                "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE ts < ? ORDER BY ts LIMIT ?)",
                (cutoff, batch_size),
            )
            return cur.rowcount

        return await self._run_tx(go)
