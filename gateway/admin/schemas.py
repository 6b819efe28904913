"""Request bodies and query parameters of the admin API, validated (pure).

Every problem raises :class:`AdminInputError` (400) whose ``param`` names the field and whose
message says what to send. Money is integer micro-credits; times are RFC 3339 (UTC assumed when
no offset is given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from newapi_gateway.errors import GatewayError
from newapi_gateway.store import KeySettings

MAX_MONEY = 2**62
MAX_TEXT = 200
MAX_REASON = 500
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
#: PATCH-able key fields (contract: docs/admin-api.md).
KEY_FIELDS = ("tier", "rateLimit", "spendingCap", "allowedModels", "expiresAt", "label")


class AdminInputError(GatewayError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(400, f"{param}: {message}", param=param, code="invalid_value")


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AdminInputError("body", "must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise AdminInputError(name, "is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        raise AdminInputError(name, f"must be a non-empty printable string of at most {limit} characters")
    return value


def _int(value: Any, name: str, minimum: int, maximum: int = MAX_MONEY) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < maximum:
        raise AdminInputError(name, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _optional_int(obj: dict[str, Any], name: str, prefix: str, minimum: int) -> int | None:
    value = obj.get(name)
    return None if value is None else _int(value, f"{prefix}.{name}", minimum)


def external_id(value: str) -> str:
    if not value or len(value) > MAX_TEXT or not value.isprintable():
        raise AdminInputError("externalId", f"must be 1-{MAX_TEXT} printable characters")
    return value


def parse_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise AdminInputError(name, "must be an RFC 3339 time like 2026-01-31T00:00:00Z, or null")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise AdminInputError(name, f"{value!r} is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True)
class KeyAttributes:
    """Key settings plus the admin-only label; ``label_set`` tells a PATCH whether to touch it."""

    settings: KeySettings
    label: str | None
    label_set: bool


def _rate_limit(value: Any) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise AdminInputError("rateLimit", 'must be an object {"rpm": int|null, "tpm": int|null} or null')
    unknown = set(value) - {"rpm", "tpm"}
    if unknown:
        raise AdminInputError("rateLimit", f"unknown field(s) {sorted(unknown)}; only rpm and tpm")
    return _optional_int(value, "rpm", "rateLimit", 1), _optional_int(value, "tpm", "rateLimit", 1)


def _spending_cap(value: Any) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise AdminInputError("spendingCap", 'must be an object {"daily": int|null, "monthly": int|null} or null')
    unknown = set(value) - {"daily", "monthly"}
    if unknown:
        raise AdminInputError("spendingCap", f"unknown field(s) {sorted(unknown)}; only daily and monthly")
    return _optional_int(value, "daily", "spendingCap", 0), _optional_int(value, "monthly", "spendingCap", 0)


def _models(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value) or len(value) > 1000:
        raise AdminInputError("allowedModels", "must be a list of model names (empty = the tier's models)")
    return tuple(dict.fromkeys(value))


def key_attributes(body: dict[str, Any], current: KeySettings | None = None) -> KeyAttributes:
    """Settings from a create body (``current`` None: ``tier`` required) or a PATCH over ``current``.

    Objects (``rateLimit``, ``spendingCap``) are replaced as a whole: a field left out is null.
    """
    if current is None:
        tier = _text(body, "tier", required=True)
        assert tier is not None
        base = KeySettings(tier=tier)
    else:
        base = current
        if "tier" in body:
            tier = _text(body, "tier", required=True)
            assert tier is not None
            base = replace(base, tier=tier)
    if "rateLimit" in body:
        rpm, tpm = _rate_limit(body["rateLimit"])
        base = replace(base, rpm=rpm, tpm=tpm)
    if "spendingCap" in body:
        daily, monthly = _spending_cap(body["spendingCap"])
        base = replace(base, cap_daily=daily, cap_monthly=monthly)
    if "allowedModels" in body:
        base = replace(base, allowed_models=_models(body["allowedModels"]))
    if "expiresAt" in body:
        base = replace(base, expires_at=parse_time(body["expiresAt"], "expiresAt"))
    label = _text(body, "label") if "label" in body else None
    return KeyAttributes(base, label, "label" in body)


def key_hash(body: dict[str, Any]) -> tuple[bytes, str] | None:
    """``(sha256 digest, display prefix)`` when the caller generated the key, else None."""
    value = body.get("keyHash")
    if value is None:
        if body.get("keyPrefix") is not None:
            raise AdminInputError("keyPrefix", "only with keyHash (without it the gateway generates the key)")
        return None
    if not isinstance(value, str) or not _HEX64.match(value):
        raise AdminInputError("keyHash", "must be the 64 hex digits of the SHA-256 of the whole key string")
    prefix = _text(body, "keyPrefix", limit=32) or ""
    return bytes.fromhex(value), prefix


@dataclass(frozen=True)
class Credit:
    amount: int
    idempotency_key: str
    reason: str | None


def credit(body: dict[str, Any]) -> Credit:
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) >= MAX_MONEY:
        raise AdminInputError("amount", "must be a non-zero integer of micro-credits (negative: an adjustment)")
    idem = _text(body, "idempotencyKey", required=True)
    assert idem is not None
    return Credit(amount, idem, _text(body, "reason", limit=MAX_REASON))


@dataclass(frozen=True)
class Signup:
    external_id: str
    display_name: str | None
    attributes: KeyAttributes
    credit_grant: int
    idempotency_key: str


def signup(body: dict[str, Any]) -> Signup:
    ext = _text(body, "externalId", required=True)
    idem = _text(body, "idempotencyKey", required=True)
    assert ext is not None
    assert idem is not None
    grant = body.get("creditGrant")
    return Signup(
        external_id=ext,
        display_name=_text(body, "displayName"),
        attributes=key_attributes(body),
        credit_grant=0 if grant is None else _int(grant, "creditGrant", 0),
        idempotency_key=idem,
    )


def display_name(body: dict[str, Any]) -> str | None:
    return _text(body, "displayName")


def limit_param(value: str | None, default: int = 100, maximum: int = 1000) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise AdminInputError("limit", f"must be an integer from 1 to {maximum}")
    return int(value)


def day_param(value: str | None, name: str, default: date) -> date:
    if value is None or value == "":
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise AdminInputError(name, f"{value!r} is not a day like 2026-01-31") from None


def time_param(value: str | None, name: str) -> datetime:
    parsed = parse_time(value, name) if value else None
    if parsed is None:
        raise AdminInputError(name, "is required (RFC 3339, e.g. 2026-01-31T00:00:00Z)")
    return parsed
