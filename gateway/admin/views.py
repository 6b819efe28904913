"""Records of the store as the admin API's JSON (pure). Money in micro-credits, times RFC 3339 UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from newapi_gateway.metering.ids import format_key_id
from newapi_gateway.store import BalanceSnapshot, Customer, KeyRecord, LedgerEntry, UsageRow
from newapi_gateway.store.models import AuditEvent, LedgerKind

LEDGER_KINDS = {LedgerKind.TOP_UP: "top_up", LedgerKind.ADJUST: "adjust", LedgerKind.DEBIT: "debit"}


def rfc3339(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def customer(c: Customer) -> dict[str, Any]:
    return {"externalId": c.external_id, "displayName": c.display_name, "createdAt": rfc3339(c.created_at)}


def balance(b: BalanceSnapshot) -> dict[str, Any]:
    return {
        "balance": b.balance,
        "held": b.held,
        "available": b.available,
        "spentToday": b.spent_today,
        "spentThisMonth": b.spent_this_month,
        "requestsToday": b.requests_today,
    }


def key(record: KeyRecord, label: str | None, secret: str | None = None) -> dict[str, Any]:
    s = record.settings
    out: dict[str, Any] = {
        "keyId": format_key_id(record.id),
        "externalId": record.customer_external_id,
        "keyPrefix": record.prefix,
        "tier": s.tier,
        "status": record.status,
        "rateLimit": {"rpm": s.rpm, "tpm": s.tpm},
        "spendingCap": {"daily": s.cap_daily, "monthly": s.cap_monthly},
        "allowedModels": list(s.allowed_models),
        "expiresAt": rfc3339(s.expires_at),
        "label": label,
    }
    if secret is not None:
        out["key"] = secret
    return out


def ledger_entry(e: LedgerEntry, external_id: str) -> dict[str, Any]:
    return {
        "id": e.id,
        "externalId": external_id,
        "keyId": format_key_id(e.key_id) if e.key_id is not None else None,
        "kind": LEDGER_KINDS.get(e.kind, str(int(e.kind))),
        "amount": e.amount,
        "balanceAfter": e.balance_after,
        "idempotencyKey": e.idempotency_key,
        "reason": e.reason,
        "createdAt": rfc3339(e.created_at),
    }


def usage_row(r: UsageRow) -> dict[str, Any]:
    return {
        "day": r.day.isoformat(),
        "model": r.model,
        "requests": r.requests,
        "inputTokens": r.input_tokens,
        "outputTokens": r.output_tokens,
        "cost": r.cost,
        "estimatedRequests": r.estimated_requests,
    }


def audit_event(e: AuditEvent, external_id: str | None) -> dict[str, Any]:
    return {
        "id": e.id,
        "ts": rfc3339(e.ts),
        "requestId": e.request_id,
        "externalId": external_id,
        "keyId": format_key_id(e.key_id) if e.key_id is not None else None,
        "channel": e.channel,
        "model": e.model,
        "upstreamModel": e.upstream_model,
        "inputTokens": e.input_tokens,
        "outputTokens": e.output_tokens,
        "cost": e.cost,
        "status": e.status,
        "latencyMs": e.latency_ms,
        "country": e.country,
        "decisions": e.decisions,
        "prompt": e.prompt,
        "completion": e.completion,
    }
