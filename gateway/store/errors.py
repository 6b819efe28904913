"""Errors of the state layer. The HTTP layer maps them to responses (see docs/metering.md)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store and the limiters raise on purpose."""


class StoreUnavailable(StoreError):
    """PostgreSQL, SQLite or Redis cannot be reached or did not answer in time.

    Fail closed: the HTTP layer answers 503 (OpenAI-shaped). The store object keeps working and
    recovers by itself once the server is back; nothing needs restarting.
    """

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend} is unavailable: {detail}")
        self.backend = backend
        self.detail = detail


class NotFound(StoreError):
    """A customer, key or hold the caller named does not exist."""


class Conflict(StoreError):
    """The request contradicts the stored state (e.g. resuming a revoked key, a reused key hash)."""


class IdempotencyConflict(Conflict):
    """The idempotency key was already used for a different operation or amount."""

    def __init__(self, idempotency_key: str, stored_amount: int, requested_amount: int) -> None:
        super().__init__(
            f"idempotency key {idempotency_key!r} was already used for amount {stored_amount} "
            f"(micro-credits); this request asks for {requested_amount}. Use a new idempotency key "
            "for a different operation."
        )
        self.idempotency_key = idempotency_key
        self.stored_amount = stored_amount
        self.requested_amount = requested_amount


class InsufficientCredit(StoreError):
    """Balance minus open holds cannot cover the hold. Maps to OpenAI's ``insufficient_quota`` (429)."""

    def __init__(self, available: int, required: int) -> None:
        super().__init__(
            f"insufficient credit: {available} micro-credits available (balance minus open holds), "
            f"{required} required for this request"
        )
        self.available = available
        self.required = required


class SpendingCapExceeded(StoreError):
    """The key's daily or monthly spending cap would be exceeded. Maps to 429 ``insufficient_quota``."""

    def __init__(self, period: str, cap: int, committed: int, required: int) -> None:
        super().__init__(
            f"{period} spending cap of {cap} micro-credits reached: {committed} spent or held, "
            f"{required} required for this request"
        )
        self.period = period
        self.cap = cap
        self.committed = committed
        self.required = required


class KeyRefused(StoreError):
    """The key is revoked, suspended or expired in the database (a cache may not have caught up)."""

    def __init__(self, key_id: int, reason: str) -> None:
        super().__init__(f"key {key_id} is {reason}")
        self.key_id = key_id
        self.reason = reason


class MigrationError(StoreError):
    """The database schema cannot be brought to this gateway's version (see the message)."""
