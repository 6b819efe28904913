"""Admission limits through the HTTP API on both back ends: RPM and TPM 429s with ``Retry-After``
and OpenAI's ``x-ratelimit-*`` headers, the tier's daily quota (seed: Free 10), the headers on
successful answers, and ``GET /quota``."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from .metered import PAID_MODEL, Admin, MeteredGateway

BODY = {"model": PAID_MODEL, "messages": [{"role": "user", "content": "limit me"}], "max_tokens": 10}


def post(gw: MeteredGateway, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(gw.base_url + "/chat/completions", json=body or BODY,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_rpm_limit(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, _ = admin.signup(customer, credit=1_000_000, rateLimit={"rpm": 2})
    first = post(gateway, key)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert post(gateway, key).headers["x-ratelimit-remaining-requests"] == "0"
    refused = post(gateway, key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert "requests per minute" in error["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    # the SDK sees a RateLimitError with OpenAI's code
    api = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        api.chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert info.value.code == "rate_limit_exceeded"


def test_tpm_limit_counts_the_request_size(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, _ = admin.signup(customer, credit=1_000_000, rateLimit={"tpm": 100})
    ok = post(gateway, key)  # prompt estimate + 10 output tokens
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-limit-tokens"] == "100"
    assert int(ok.headers["x-ratelimit-remaining-tokens"]) < 100
    too_large = post(gateway, key, {**BODY, "max_tokens": 500})
    assert too_large.status_code == 429
    assert too_large.json()["error"]["type"] == "tokens"
    assert "Retry-After" not in too_large.headers  # waiting cannot fix it


def test_free_tier_daily_quota(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, _ = admin.signup(customer, tier="free", credit=1_000_000)
    for n in range(10):
        rsp = post(gateway, key)
        assert rsp.status_code == 200, rsp.text
        assert rsp.headers["x-ratelimit-remaining-requests-day"] == str(9 - n)
    refused = post(gateway, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "daily_quota_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 86_400
    assert refused.headers["x-ratelimit-limit-requests-day"] == "10"
    assert refused.headers["x-ratelimit-remaining-requests-day"] == "0"
    quota = httpx.get(gateway.url + "/quota", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    assert quota["dailyQuota"]["limit"] == 10
    assert (quota["dailyQuota"]["used"], quota["dailyQuota"]["remaining"]) == (10, 0)


def test_quota_endpoint(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, record = admin.signup(customer, credit=1_000_000, rateLimit={"rpm": 60, "tpm": 100_000},
                               spendingCap={"daily": 500_000, "monthly": 900_000})
    assert post(gateway, key).status_code == 200
    rsp = httpx.get(gateway.url + "/quota", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert rsp.status_code == 200
    quota = rsp.json()
    assert quota["keyId"] == record["keyId"]
    assert quota["tier"] == "pro"
    credit = quota["credit"]
    assert credit["available"] == credit["balance"] - credit["held"]
    assert credit["balance"] <= 1_000_000
    assert quota["spendingCap"]["daily"] == 500_000
    assert quota["spendingCap"]["remainingToday"] <= 500_000
    assert quota["rateLimit"]["rpm"] == 60
    assert quota["rateLimit"]["remainingRequests"] == 59
    assert quota["dailyQuota"] == {"limit": 1000, "used": 1, "remaining": 999,
                                   "resetsAt": quota["dailyQuota"]["resetsAt"]}
    unauth = httpx.get(gateway.url + "/quota", timeout=10)
    assert unauth.status_code == 401
    assert unauth.json()["error"]["type"] == "invalid_request_error"
