"""The records the store hands out. Plain frozen dataclasses: cheap on the hot path, no I/O.

Money is an ``int`` of micro-credits everywhere (1 credit = 1,000,000). Times are timezone-aware
UTC ``datetime``; days are UTC ``date``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import Any, Literal

KeyStatus = Literal["active", "suspended", "revoked"]
KEY_STATUSES: tuple[KeyStatus, ...] = ("active", "suspended", "revoked")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    external_id: str
    display_name: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeySettings:
    """Everything about a key the admin API (or the CustomerKey reconcile) sets; replaced as a whole.

    ``None`` limits mean "no limit". ``allowed_models`` empty = the tier's models.
    """

    tier: str
    rpm: int | None = None
    tpm: int | None = None
    cap_daily: int | None = None
    cap_monthly: int | None = None
    allowed_models: tuple[str, ...] = ()
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.tier:
            raise ValueError("tier: must be a non-empty tier name")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be at least 1 or None (unlimited), got {value}")
        for name in ("cap_daily", "cap_monthly"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name}: must be >= 0 micro-credits or None (no cap), got {value}")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at: must be timezone-aware (UTC)")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the hot path needs to know about a key (never the key or its hash)."""

    id: int
    customer_id: int
    customer_external_id: str
    prefix: str
    status: KeyStatus
    rotation: int
    settings: KeySettings

    @property
    def tier(self) -> str:
        return self.settings.tier

    def refusal(self, now: datetime | None = None) -> str | None:
        """Why the key may not be used right now (``revoked``, ``suspended``, ``expired``), or None."""
        if self.status != "active":
            return self.status
        expires = self.settings.expires_at
        if expires is not None and (now or utcnow()) >= expires:
            return "expired"
        return None

    def allows_model(self, model: str) -> bool:
        """True when the key's own model list (not the tier's) permits ``model``."""
        return not self.settings.allowed_models or model in self.settings.allowed_models


# Per-request records: not frozen (a frozen init costs about twice as much), and their __init__ is
# written out: the dataclass decorator's generated one is interpreted code even where setup.py
# compiles this module.
@dataclass(slots=True, init=False)
class Hold:
    """An open reservation of credit for one request. ``request_id`` identifies it."""

    request_id: str
    customer_id: int
    key_id: int
    amount: int
    expires_at: datetime

    def __init__(self, request_id: str, customer_id: int, key_id: int, amount: int, expires_at: datetime) -> None:
        self.request_id = request_id
        self.customer_id = customer_id
        self.key_id = key_id
        self.amount = amount
        self.expires_at = expires_at


@dataclass(slots=True, init=False)  # built per request: not frozen, and __init__ written out (see Hold)
class Usage:
    """Token usage of one request, as settled. ``estimated`` when the upstream reported none."""

    model: str
    channel: str
    input_tokens: int
    output_tokens: int
    estimated: bool = False

    def __init__(
        self, model: str, channel: str, input_tokens: int, output_tokens: int, estimated: bool = False
    ) -> None:
        self.model = model
        self.channel = channel
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.estimated = estimated


@dataclass(slots=True, init=False)  # built per request: not frozen, and __init__ written out (see Hold)
class Settlement:
    """Result of settling a hold. ``duplicate`` when the request was already settled before
    (nothing was charged again; ``charged`` and ``ledger_id`` are the original debit's)."""

    request_id: str
    ledger_id: int
    charged: int
    released: int
    balance_after: int
    duplicate: bool

    def __init__(
        self, request_id: str, ledger_id: int, charged: int, released: int, balance_after: int, duplicate: bool
    ) -> None:
        self.request_id = request_id
        self.ledger_id = ledger_id
        self.charged = charged
        self.released = released
        self.balance_after = balance_after
        self.duplicate = duplicate


@dataclass(slots=True, init=False)  # built per request: not frozen, and __init__ written out (see Hold)
class Debit:
    """One request to settle in :meth:`~newapi_gateway.store.base.Store.settle_many`."""

    hold: Hold
    cost: int
    usage: Usage
    audit: AuditEvent | None = None

    def __init__(self, hold: Hold, cost: int, usage: Usage, audit: AuditEvent | None = None) -> None:
        self.hold = hold
        self.cost = cost
        self.usage = usage
        self.audit = audit


class LedgerKind(IntEnum):
    TOP_UP = 1
    ADJUST = 2
    DEBIT = 3


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger row. ``amount`` is signed: credits positive, debits negative."""

    id: int
    customer_id: int
    key_id: int | None
    kind: LedgerKind
    amount: int
    balance_after: int
    idempotency_key: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerPage:
    entries: list[LedgerEntry]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One usage rollup row: a key's usage of one model on one UTC day."""

    key_id: int
    day: date
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost: int
    estimated_requests: int


@dataclass(frozen=True, slots=True)
class BalanceSnapshot:
    """A customer's money at a glance (``available`` = balance - held)."""

    customer_id: int
    balance: int
    held: int
    spent_today: int
    spent_this_month: int
    requests_today: int
    as_of: datetime

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class KeySpend:
    """A key's spending against its caps: settled cost today/this month plus its open holds."""

    key_id: int
    spent_today: int
    spent_this_month: int
    held: int
    requests_today: int


@dataclass(slots=True)
class AuditEvent:
    """One audit row per request (issue 7). ``id`` is assigned by the store.

    ``decisions`` holds the policy decisions (e.g. ``{"geo": "allow", "aup": "flag:pii"}``);
    ``prompt``/``completion`` are only set when ``audit.logPromptContent`` is true.
    """

    ts: datetime
    request_id: str
    status: int
    customer_id: int | None = None
    key_id: int | None = None
    channel: str | None = None
    model: str | None = None
    upstream_model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0
    latency_ms: int = 0
    country: str | None = None
    decisions: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None
    completion: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Health:
    """``ok`` when every back end answers; ``degraded`` otherwise, with a reason per component."""

    status: Literal["ok", "degraded"]
    components: dict[str, str]
