"""``GET /quota`` (customer port, key auth): the caller's credit, holds, caps, limits and today's quota.

Money in integer micro-credits. Reads the balance and the key's cap counters from the store and
peeks at the limiter (nothing is counted).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from newapi_gateway import jsonutil
from newapi_gateway.errors import GatewayError, invalid_key, missing_key
from newapi_gateway.keys import KeyResolver
from newapi_gateway.limits import Limiter
from newapi_gateway.proxy import extract_key
from newapi_gateway.state import GatewayState
from newapi_gateway.store import Store, StoreUnavailable

from .admission import LimitsAdmission
from .errors import store_unavailable
from .resolver import record_of


def _remaining(cap: int | None, committed: int) -> int | None:
    return None if cap is None else max(cap - committed, 0)


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class QuotaEndpoint:
    """The ``GET /quota`` handler."""

    def __init__(self, state: GatewayState, keys: KeyResolver, store: Store, limiter: Limiter,
                 admission: LimitsAdmission) -> None:
        self.state = state
        self.keys = keys
        self.store = store
        self.limiter = limiter
        self.admission = admission

    async def __call__(self, request: web.Request) -> web.Response:
        try:
            body = await self._quota(request)
        except GatewayError as err:
            headers = {"Content-Type": "application/json", **(err.headers or {})}
            return web.Response(body=err.body_bytes("openai"), status=err.status, headers=headers)
        return web.Response(body=jsonutil.dumps(body), headers={"Content-Type": "application/json",
                                                               "Cache-Control": "no-store"})

    async def _quota(self, request: web.Request) -> dict[str, Any]:
        api_key = extract_key(request, allow_x_api_key=True)
        if api_key is None:
            raise missing_key()
        key = await self.keys.resolve(api_key)
        if key is None:
            raise invalid_key()
        record = record_of(key)
        snap = self.state.snapshot
        tier = snap.table.policy.tiers.get(record.tier) if snap is not None else None
        quota_limit = tier.daily_request_quota if tier is not None else None
        spec = self.admission.spec(record.settings.rpm, record.settings.tpm, quota_limit)
        try:
            balance = await self.store.balance(record.customer_id)
            spend = await self.store.key_spend(record.id)
            decision = await self.limiter.peek(record.id, spec)
        except StoreUnavailable as exc:
            raise store_unavailable(exc) from None
        s = record.settings
        now = datetime.now(UTC)
        tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        used = spend.requests_today
        if quota_limit is not None and decision.remaining_quota is not None:
            used = max(quota_limit - decision.remaining_quota, 0)
        return {
            "object": "quota",
            "keyId": key.key_id,
            "keyPrefix": record.prefix,
            "customer": record.customer_external_id,
            "tier": record.tier,
            "credit": {
                "balance": balance.balance,
                "held": balance.held,
                "available": balance.available,
                "unlimited": bool(tier is not None and tier.unlimited_credit),
            },
            "spendingCap": {
                "daily": s.cap_daily,
                "monthly": s.cap_monthly,
                "spentToday": spend.spent_today,
                "spentThisMonth": spend.spent_this_month,
                "held": spend.held,
                "remainingToday": _remaining(s.cap_daily, spend.spent_today + spend.held),
                "remainingThisMonth": _remaining(s.cap_monthly, spend.spent_this_month + spend.held),
            },
            "rateLimit": {
                "rpm": s.rpm,
                "tpm": s.tpm,
                "remainingRequests": decision.remaining_requests,
                "remainingTokens": decision.remaining_tokens,
            },
            "dailyQuota": {
                "limit": quota_limit,
                "used": used,
                "remaining": None if quota_limit is None else max(quota_limit - used, 0),
                "resetsAt": _rfc3339(tomorrow),
            },
            "expiresAt": _rfc3339(s.expires_at) if s.expires_at is not None else None,
        }
