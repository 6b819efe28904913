"""The client-facing errors of the metering layer, in OpenAI's shape (see docs/metering.md).

* credit and spending caps: 429, ``type`` and ``code`` ``insufficient_quota`` (OpenAI's exact
  shape), with ``x-should-retry: false`` so the official SDKs do not retry what waiting cannot fix;
* rate limits: 429 ``rate_limit_exceeded`` (``type`` ``requests`` or ``tokens``, as OpenAI), the
  daily request quota ``daily_quota_exceeded``, with ``Retry-After`` and ``x-ratelimit-*``;
* the state store unreachable: 503 ``store_unavailable`` (fail closed) with ``Retry-After``.
"""

from __future__ import annotations

from newapi_gateway.errors import GatewayError
from newapi_gateway.limits import LimitDecision
from newapi_gateway.money import format_credits
from newapi_gateway.store import InsufficientCredit, KeyRefused, SpendingCapExceeded, StoreUnavailable

NO_RETRY = {"x-should-retry": "false"}


def insufficient_credit(exc: InsufficientCredit) -> GatewayError:
    return GatewayError(
        429,
        "You exceeded your current quota, please check your plan and billing details: this request may cost up "
        f"to {format_credits(exc.required)} credits and {format_credits(max(exc.available, 0))} are available "
        "(balance minus requests in flight). Top up your credit, or lower max_tokens.",
        type="insufficient_quota",
        code="insufficient_quota",
        headers=dict(NO_RETRY),
    )


def spending_cap(exc: SpendingCapExceeded) -> GatewayError:
    return GatewayError(
        429,
        f"You exceeded your {exc.period} spending cap of {format_credits(exc.cap)} credits for this key "
        f"({format_credits(exc.committed)} spent or in flight, this request may cost up to "
        f"{format_credits(exc.required)}). The cap is set by your provider; it resets at the start of the next "
        f"{'UTC day' if exc.period == 'daily' else 'calendar month (UTC)'}.",
        type="insufficient_quota",
        code="insufficient_quota",
        headers=dict(NO_RETRY),
    )


def key_refused(reason: str) -> GatewayError:
    """A key that is revoked, suspended or expired: 401 like an unknown key, the message says which."""
    what = {"revoked": "has been revoked", "suspended": "is suspended", "expired": "has expired"}.get(
        reason, "is not valid"
    )
    return GatewayError(401, f"Incorrect API key provided: this key {what}.", code="invalid_api_key")


def key_refused_from(exc: KeyRefused) -> GatewayError:
    return key_refused(exc.reason)


def store_unavailable(exc: StoreUnavailable | None = None) -> GatewayError:
    return GatewayError(
        503,
        "The gateway cannot reach its metering store right now, so it cannot check keys, limits or credit; "
        "the request was not processed. Please retry shortly.",
        type="server_error",
        code="store_unavailable",
        headers={"Retry-After": "1"},
    )


def rate_limited(decision: LimitDecision) -> GatewayError:
    headers = decision.headers(daily=True)
    if decision.reason == "quota":
        kind, code = "requests", "daily_quota_exceeded"
    elif decision.reason in ("tpm", "too_large"):
        kind, code = "tokens", "rate_limit_exceeded"
    else:
        kind, code = "requests", "rate_limit_exceeded"
    if decision.reason == "too_large":
        headers.update(NO_RETRY)
    return GatewayError(429, decision.message(), type=kind, code=code, headers=headers)
