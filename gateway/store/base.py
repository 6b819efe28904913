"""The store interface: one abstract class, two implementations (SQLite embedded, PostgreSQL + Redis).

Everything below the HTTP layer that is money or identity goes through :class:`Store`:
customers, keys, the credit ledger (authorize -> settle/release, top-up, adjust), spending caps,
usage rollups, balance snapshots and the audit log. Rate limits live next door in
``newapi_gateway.limits``.

Hot path per paid request (see docs/metering.md): ``resolve_key`` (in-process cache, normally no
round trip) -> limits (one Redis round trip) -> ``authorize`` (one database round trip) -> upstream
-> ``settle`` or ``release`` (one database round trip, after the response went out). ``authorize``
and ``settle`` go through group commit, so under load one transaction carries many requests.

Every method may raise :class:`~newapi_gateway.store.errors.StoreUnavailable` when a back end is
down; the store recovers by itself when it is back.
"""

from __future__ import annotations

import asyncio
import base64
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from newapi_gateway.store.keycache import KeyCache
from newapi_gateway.store.models import (
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
    LedgerPage,
    Settlement,
    Usage,
    UsageRow,
    utcnow,
)

Clock = Callable[[], datetime]

MAX_ID_LEN = 200
_CURSOR = re.compile(r"^[0-9]{1,19}$")


def check_id(field: str, value: str) -> None:
    """Request ids and idempotency keys: 1..200 printable characters."""
    if not value or len(value) > MAX_ID_LEN or not value.isprintable():
        raise ValueError(f"{field}: must be 1-{MAX_ID_LEN} printable characters, got {value!r}")


def safe_text(value: str | None) -> str | None:
    """Text any database accepts: NUL and lone surrogates (possible in client-supplied model names
    and prompts) become U+FFFD. One bad string must never fail a whole group-commit batch."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def clamp_int32(value: int) -> int:
    return max(-(2**31), min(2**31 - 1, value))


def check_amount(field: str, value: int, *, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{field}: money is an integer number of micro-credits, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{field}: must be >= {minimum} micro-credits, got {value}")
    if value >= 2**62:
        raise ValueError(f"{field}: {value} micro-credits is out of range")


def check_debit(cost: int, usage: Usage) -> None:
    """Validate what a settle charges: the cost and the usage's token counts (integers, >= 0)."""
    i, o = usage.input_tokens, usage.output_tokens
    # every debit of the hot path: one test instead of three calls (for ints, ``a | b | c`` is
    # negative when one of them is, and 2**62 or more when one of them is)
    if type(cost) is int and type(i) is int and type(o) is int and 0 <= (cost | i | o) < 2**62:
        return
    check_amount("cost", cost)
    check_amount("usage.input_tokens", i)
    check_amount("usage.output_tokens", o)


def check_key_hash(key_hash: bytes) -> None:
    if not isinstance(key_hash, bytes) or len(key_hash) != 32:
        raise ValueError("key_hash: must be the 32-byte SHA-256 digest of the key (see store.keys.hash_key)")


def encode_cursor(*parts: int) -> str:
    return base64.urlsafe_b64encode(":".join(str(p) for p in parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> tuple[int, ...]:
    """Inverse of :func:`encode_cursor`; ValueError (client error) on anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = raw.split(":")
        if len(parts) != count or not all(_CURSOR.match(p) for p in parts):
            raise ValueError(cursor)
        return tuple(int(p) for p in parts)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"cursor: {cursor!r} is not a cursor this API returned") from exc


def month_start(day: date) -> date:
    return day.replace(day=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_us(dt: datetime) -> int:
    """Microseconds since the Unix epoch (exact; no float)."""
    if dt.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A shared lookup whose callers all went away: consume its outcome (no "never retrieved" noise)."""
    if not task.cancelled():
        task.exception()


class Store(ABC):
    """The state layer. Implementations: :class:`~newapi_gateway.store.sqlite.SqliteStore`,
    :class:`~newapi_gateway.store.postgres.PostgresStore`."""

    #: ``sqlite`` or ``postgres``.
    backend: str

    def __init__(self, *, key_cache_ttl: float = 1.0, clock: Clock = utcnow) -> None:
        self.key_cache = KeyCache(ttl=key_cache_ttl)
        self.clock = clock
        # cache misses in flight: hash -> (cache generation it started at, the lookup); concurrent
        # misses of one key share one database read instead of one each when its entry expires
        self._lookups: dict[bytes, tuple[tuple[int, int], asyncio.Task[KeyRecord | None]]] = {}
        #: Database reads made by :meth:`resolve_key` (cache misses, shared by concurrent callers).
        self.key_lookups = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations (safe with several replicas starting at once)."""

    @abstractmethod
    async def close(self) -> None:
        """Flush pending group commits and disconnect."""

    @abstractmethod
    async def health(self) -> Health:
        """``ok`` or ``degraded`` with a reason per component; never raises."""

    @abstractmethod
    async def schema_version(self) -> int:
        """Highest applied migration version."""

    # -- customers -----------------------------------------------------------------------------

    @abstractmethod
    async def upsert_customer(self, external_id: str, display_name: str | None = None) -> Customer:
        """Create the customer (with a zero balance) or update its display name."""

    @abstractmethod
    async def get_customer(self, external_id: str) -> Customer | None: ...

    @abstractmethod
    async def get_customer_by_id(self, customer_id: int) -> Customer | None: ...

    # -- keys ----------------------------------------------------------------------------------

    @abstractmethod
    async def issue_key(self, customer_id: int, key_hash: bytes, prefix: str, settings: KeySettings) -> KeyRecord:
        """Store a new active key (its SHA-256 only). Conflict if the hash exists; NotFound if no customer."""

    @abstractmethod
    async def rotate_key(self, key_id: int, key_hash: bytes, prefix: str) -> KeyRecord:
        """Replace the key's secret: the old one stops working at once; id, settings, usage stay."""

    @abstractmethod
    async def set_key_status(self, key_id: int, status: str) -> KeyRecord:
        """``active`` (resume), ``suspended`` or ``revoked`` (final: a revoked key cannot come back)."""

    async def revoke_key(self, key_id: int) -> KeyRecord:
        return await self.set_key_status(key_id, "revoked")

    async def suspend_key(self, key_id: int) -> KeyRecord:
        return await self.set_key_status(key_id, "suspended")

    async def resume_key(self, key_id: int) -> KeyRecord:
        return await self.set_key_status(key_id, "active")

    @abstractmethod
    async def update_key(self, key_id: int, settings: KeySettings) -> KeyRecord:
        """Replace tier, limits, caps, allowed models and expiry."""

    @abstractmethod
    async def get_key(self, key_id: int) -> KeyRecord | None: ...

    @abstractmethod
    async def list_keys(self, customer_id: int) -> list[KeyRecord]: ...

    @abstractmethod
    async def lookup_key(self, key_hash: bytes) -> KeyRecord | None:
        """Uncached resolution (any status). The hot path goes through the cache: :meth:`resolve_key`
        (or ``key_cache`` and, on a miss, :meth:`resolve_missed_key`)."""

    async def resolve_key(self, key_hash: bytes) -> KeyRecord | None:
        """hash -> key record (any status: check ``refusal()``), through the in-process cache.

        None when no key has this hash. Revocations reach every replica's cache within 2 s
        (immediately through the invalidation channel; at worst after the cache TTL).
        """
        hit, record = self.key_cache.get(key_hash)
        if hit:
            return record
        return await self.resolve_missed_key(key_hash)

    async def resolve_missed_key(self, key_hash: bytes) -> KeyRecord | None:
        """:meth:`resolve_key` after its cache missed: the database read (shared by concurrent
        misses of one key), cached. A caller that looked in ``key_cache`` itself continues here."""
        cache = self.key_cache
        generation = cache.generation
        inflight = self._lookups.get(key_hash)
        # join a read in flight only when no invalidation happened since it started (it might
        # predate a revocation this caller must see)
        if inflight is None or inflight[0] != generation:
            task = asyncio.get_running_loop().create_task(self._lookup_shared(key_hash, generation))
            inflight = self._lookups[key_hash] = (generation, task)
            task.add_done_callback(_retrieved)
        # shielded: a caller going away (client disconnect) does not cancel the others' read
        return await asyncio.shield(inflight[1])

    async def _lookup_shared(self, key_hash: bytes, generation: tuple[int, int]) -> KeyRecord | None:
        self.key_lookups += 1
        try:
            record = await self.lookup_key(key_hash)
        finally:
            entry = self._lookups.get(key_hash)
            if entry is not None and entry[0] == generation:
                del self._lookups[key_hash]
        self.key_cache.put(key_hash, record, generation)
        return record

    # -- money ---------------------------------------------------------------------------------

    @abstractmethod
    async def authorize(
        self, key: KeyRecord, amount: int, request_id: str, ttl: float, *, unlimited_credit: bool = False
    ) -> Hold:
        """Place a hold of ``amount`` micro-credits for ``request_id`` that expires after ``ttl`` seconds.

        Atomic per customer: concurrent authorizations never reserve more than balance minus open
        holds. Raises InsufficientCredit, SpendingCapExceeded (the key's daily/monthly cap, counting
        settled cost and open holds), KeyRefused (revoked/suspended/expired in the database, even
        if a cache still had it), Conflict (a hold for ``request_id`` exists). With
        ``unlimited_credit`` (the tier's open budget) the balance is not checked, caps still are.
        """

    @abstractmethod
    async def settle(self, hold: Hold, cost: int, usage: Usage, audit: AuditEvent | None = None) -> Settlement:
        """Charge ``cost`` for the request: ONE ledger debit with idempotency key = request id,
        release the hold, add to the usage rollup (and write ``audit`` in the same transaction).

        Idempotent: settling a request again charges nothing and returns the first settlement
        with ``duplicate=True``. Works after the hold expired (the debit still happens). Returns
        only after the transaction committed durably (survives a gateway SIGKILL).
        """

    @abstractmethod
    async def settle_many(self, debits: Sequence[Debit]) -> list[Settlement | BaseException]:
        """Settle several requests, each exactly as :meth:`settle` would; one result per debit, in
        order: its Settlement, or the exception that debit met (StoreUnavailable: retry it).

        The whole lot goes into one group commit with a single waiter (the meter's batched debits).
        Raises only for an error that fails every debit alike (e.g. StoreUnavailable).
        """

    @abstractmethod
    async def release(self, hold: Hold) -> None:
        """Drop the hold without charging (the request failed before any billable usage)."""

    @abstractmethod
    async def expire_holds(self, now: datetime | None = None, limit: int = 1000) -> int:
        """Release holds whose ``expires_at`` passed, with ZERO charge; returns how many.

        A settled request has no hold left (settle deletes it in the same transaction), so an
        expired hold means the request never settled: its gateway crashed or lost the database.
        See docs/metering.md for why releasing (not charging) is the rule.
        """

    @abstractmethod
    async def top_up(self, customer_id: int, amount: int, idempotency_key: str, reason: str) -> LedgerEntry:
        """Credit ``amount`` (> 0). Idempotent: the same key again returns the first entry; the same
        key with another amount raises IdempotencyConflict."""

    @abstractmethod
    async def adjust(self, customer_id: int, amount: int, idempotency_key: str, reason: str) -> LedgerEntry:
        """Correct the balance by a signed ``amount`` (!= 0), idempotent like :meth:`top_up`."""

    @abstractmethod
    async def balance(self, customer_id: int) -> BalanceSnapshot:
        """Balance, held, spent today / this month and requests today (UTC), from rollups."""

    @abstractmethod
    async def key_spend(self, key_id: int) -> KeySpend:
        """A key's spending against its caps (settled cost today / this month, open holds)."""

    @abstractmethod
    async def list_ledger(self, customer_id: int, cursor: str | None = None, limit: int = 100) -> LedgerPage:
        """Newest first; pass ``next_cursor`` back for the next page (None when done)."""

    @abstractmethod
    async def usage(
        self, *, start: date, end: date, customer_id: int | None = None, key_id: int | None = None
    ) -> list[UsageRow]:
        """Rollup rows (per key per UTC day per model) with ``start <= day <= end``, from the
        rollup table (never the raw ledger). Exactly one of ``customer_id`` / ``key_id``."""

    # -- audit ---------------------------------------------------------------------------------

    @abstractmethod
    async def add_audit_events(self, events: Sequence[AuditEvent]) -> None:
        """Insert audit rows in one statement (callers batch; settle can carry its own row)."""

    @abstractmethod
    async def query_audit(
        self,
        *,
        since: datetime,
        until: datetime,
        customer_id: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> AuditPage:
        """Rows with ``since <= ts < until`` (optionally one customer), oldest first, paginated."""

    async def export_audit(
        self, *, since: datetime, until: datetime, customer_id: int | None = None, page_size: int = 1000
    ) -> AsyncIterator[AuditEvent]:
        """Every matching row, oldest first, fetched page by page (for JSON-lines export)."""
        cursor: str | None = None
        while True:
            page = await self.query_audit(
                since=since, until=until, customer_id=customer_id, cursor=cursor, limit=page_size
            )
            for event in page.events:
                yield event
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    @abstractmethod
    async def delete_audit_batch(self, before: datetime, batch_size: int = 1000) -> int:
        """Delete at most ``batch_size`` rows with ``ts < before`` in one short transaction."""

    async def delete_audit_before(
        self, before: datetime, batch_size: int = 1000, max_batches: int | None = None
    ) -> int:
        """Retention: delete rows older than ``before`` in bounded batches; returns rows deleted."""
        total = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            deleted = await self.delete_audit_batch(before, batch_size)
            total += deleted
            batches += 1
            if deleted < batch_size:
                break
        return total

    # -- helpers for implementations ----------------------------------------------------------

    def _today(self) -> date:
        return self.clock().date()

    @staticmethod
    def _hold_expiry(now: datetime, ttl: float) -> datetime:
        if ttl <= 0:
            raise ValueError(f"ttl: a hold needs a positive lifetime in seconds, got {ttl}")
        return now + timedelta(seconds=ttl)
