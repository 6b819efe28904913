"""The paid request path end to end, on both state back ends, through the public HTTP API with the
official ``openai`` SDK: hold before, debit after at the upstream's usage (or a flagged estimate),
release on failure, insufficient credit, spending caps, tier multipliers, BYOK, expiry."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from newapi_gateway.pricing import estimate_prompt_tokens, text_tokens

from .metered import BYOK_MODEL, PAID_MODEL, Admin, MeteredGateway, poll

HELLO = "hello metered world"


def client(gw: MeteredGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def messages(text: str = HELLO) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def wait_debits(admin: Admin, customer: str, n: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        found = admin.debits(customer)
        return found if len(found) >= n else None

    debits: list[dict[str, Any]] = poll(enough, what=f"{n} debits of {customer}")
    assert len(debits) == n, debits
    return debits


def usage_rows(admin: Admin, key_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = admin.ok("GET", f"/keys/{key_id}/usage")["data"]
    return rows


def test_settles_the_upstream_usage_after_completion(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, record = admin.signup(customer, credit=1_000_000)
    api = client(gateway, key)
    raw = api.chat.completions.with_raw_response.create(model=PAID_MODEL, messages=messages(), max_tokens=50)  # type: ignore[arg-type]
    completion = raw.parse()
    assert completion.usage is not None
    first = completion.usage.prompt_tokens + 2 * completion.usage.completion_tokens
    debits = wait_debits(admin, customer, 1)
    assert debits[0]["amount"] == -first
    assert debits[0]["idempotencyKey"] == raw.headers["x-request-id"]  # one debit per request id
    assert debits[0]["keyId"] == record["keyId"]

    chunks = list(api.chat.completions.create(model=PAID_MODEL, messages=messages("stream me please"),  # type: ignore[call-overload]
                                              max_tokens=50, stream=True, stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    second = usage.prompt_tokens + 2 * usage.completion_tokens
    debits = wait_debits(admin, customer, 2)
    assert debits[0]["amount"] == -second
    balance = admin.balance(customer)
    assert balance["balance"] == 1_000_000 - first - second
    assert balance["held"] == 0
    assert balance["requestsToday"] == 2
    rows = usage_rows(admin, record["keyId"])
    assert [(r["model"], r["requests"], r["cost"], r["estimatedRequests"]) for r in rows] == [
        (PAID_MODEL, 2, first + second, 0)
    ]
    assert rows[0]["inputTokens"] == completion.usage.prompt_tokens + usage.prompt_tokens


def test_missing_usage_is_estimated_and_flagged(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, record = admin.signup(customer, credit=1_000_000)
    body = {"model": PAID_MODEL, "messages": messages("[[demo:usage=omit]] count these words"), "max_tokens": 50}
    completion = client(gateway, key).chat.completions.create(**body)
    assert completion.usage is None
    answer = completion.choices[0].message.content or ""
    expected = estimate_prompt_tokens(body, "chat") + 2 * text_tokens(answer)
    assert wait_debits(admin, customer, 1)[0]["amount"] == -expected
    assert usage_rows(admin, record["keyId"])[0]["estimatedRequests"] == 1


def test_zero_usage_is_authoritative(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, record = admin.signup(customer, credit=1_000_000)
    client(gateway, key).chat.completions.create(model=PAID_MODEL, messages=messages("[[demo:usage=zero]] hi"),  # type: ignore[arg-type]
                                                 max_tokens=50)
    assert wait_debits(admin, customer, 1)[0]["amount"] == 0
    row = usage_rows(admin, record["keyId"])[0]
    assert (row["requests"], row["inputTokens"], row["outputTokens"], row["estimatedRequests"]) == (1, 0, 0, 0)
    assert admin.balance(customer)["balance"] == 1_000_000


def test_client_disconnect_mid_stream_settles_what_was_delivered(
    gateway: MeteredGateway, admin: Admin, customer: str
) -> None:
    key, record = admin.signup(customer, credit=1_000_000)
    body = {"model": PAID_MODEL, "messages": messages("[[demo:tokens=300;chunk_delay_ms=20]] go"),
            "max_tokens": 300, "stream": True, "stream_options": {"include_usage": True}}
    events = 0
    with httpx.Client(timeout=30) as http, http.stream(
        "POST", gateway.base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as rsp:
        assert rsp.status_code == 200
        for line in rsp.iter_lines():
            if line.startswith("data:"):
                events += 1
            if events >= 10:
                break  # leaving the block closes the connection mid-stream
    prompt = estimate_prompt_tokens(body, "chat")
    debit = -wait_debits(admin, customer, 1)[0]["amount"]
    delivered = (debit - prompt) // 2
    assert 10 <= delivered < 300, f"billed {delivered} output tokens for a stream cut after ~10 of 300"
    assert debit < prompt + 2 * 300  # less than the hold
    assert usage_rows(admin, record["keyId"])[0]["estimatedRequests"] == 1
    assert poll(lambda: admin.balance(customer)["held"] == 0, what="hold released")


def test_insufficient_credit_is_openai_insufficient_quota(
    gateway: MeteredGateway, admin: Admin, customer: str
) -> None:
    key, _ = admin.signup(customer, credit=50)
    with pytest.raises(openai.RateLimitError) as info:
        client(gateway, key).chat.completions.create(model=PAID_MODEL, messages=messages(), max_tokens=100)  # type: ignore[arg-type]
    err = info.value
    assert err.status_code == 429
    assert err.body == {"message": err.body["message"], "type": "insufficient_quota", "param": None,  # type: ignore[index]
                        "code": "insufficient_quota"}
    assert err.response.headers["x-should-retry"] == "false"
    assert err.response.headers["x-request-id"]
    # a request whose maximum fits is served
    client(gateway, key).chat.completions.create(model=PAID_MODEL, messages=messages(), max_tokens=5)  # type: ignore[arg-type]
    assert admin.balance(customer)["balance"] >= 0


def test_daily_spending_cap(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    # hold per request = prompt estimate (16) + 2 x 50; actual cost 3 + 2 x 4 = 11
    key, _ = admin.signup(customer, credit=1_000_000, spendingCap={"daily": 130})
    api = client(gateway, key)
    for n in (1, 2):
        api.chat.completions.create(model=PAID_MODEL, messages=messages(), max_tokens=50)  # type: ignore[arg-type]
        wait_debits(admin, customer, n)
    with pytest.raises(openai.RateLimitError) as info:
        api.chat.completions.create(model=PAID_MODEL, messages=messages(), max_tokens=50)  # type: ignore[arg-type]
    assert info.value.code == "insufficient_quota"
    assert "daily spending cap" in info.value.message


def test_failed_upstream_attempt_releases_its_hold(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, _ = admin.signup(customer, credit=1_000_000)
    with pytest.raises(openai.InternalServerError):
        client(gateway, key).chat.completions.create(model=PAID_MODEL, messages=messages("[[demo:status=500]] x"),  # type: ignore[arg-type]
                                                     max_tokens=50)
    balance = admin.balance(customer)
    assert (balance["balance"], balance["held"]) == (1_000_000, 0)
    assert admin.debits(customer) == []


def test_byok_costs_the_operator_nothing(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, record = admin.signup(customer, credit=0)
    completion = client(gateway, key).chat.completions.create(
        model=BYOK_MODEL, messages=messages(), max_tokens=50,  # type: ignore[arg-type]
        extra_headers={"X-Provider-Key": "sk-customer-own-provider-key", "X-Provider": "openai"},
    )
    assert completion.usage is not None
    assert wait_debits(admin, customer, 1)[0]["amount"] == 0
    row = usage_rows(admin, record["keyId"])[0]
    assert (row["model"], row["requests"], row["cost"]) == (BYOK_MODEL, 1, 0)
    assert row["outputTokens"] == completion.usage.completion_tokens
    assert admin.balance(customer)["balance"] == 0


def test_tier_multiplier_and_unlimited_credit(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, _ = admin.signup(customer + "-double", tier="double", credit=1_000_000)
    completion = client(gateway, key).chat.completions.create(model=PAID_MODEL, messages=messages(), max_tokens=50)  # type: ignore[arg-type]
    assert completion.usage is not None
    base = completion.usage.prompt_tokens + 2 * completion.usage.completion_tokens
    assert wait_debits(admin, customer + "-double", 1)[0]["amount"] == -2 * base

    key, _ = admin.signup(customer + "-ent", tier="enterprise", credit=0)
    client(gateway, key).chat.completions.create(model=PAID_MODEL, messages=messages(), max_tokens=50)  # type: ignore[arg-type]
    assert wait_debits(admin, customer + "-ent", 1)[0]["amount"] == -base  # billed, on an open budget
    assert admin.balance(customer + "-ent")["balance"] == -base


def test_expired_and_revoked_keys_are_refused(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, _ = admin.signup(customer, credit=1000, expiresAt="2020-01-01T00:00:00Z")
    with pytest.raises(openai.AuthenticationError) as info:
        client(gateway, key).chat.completions.create(model=PAID_MODEL, messages=messages(), max_tokens=5)  # type: ignore[arg-type]
    assert info.value.code == "invalid_api_key"
    assert "expired" in info.value.message
    key, record = admin.signup(customer + "-r", credit=1000)
    client(gateway, key).chat.completions.create(model=PAID_MODEL, messages=messages(), max_tokens=5)  # type: ignore[arg-type]
    admin.ok("POST", f"/keys/{record['keyId']}/revoke")

    def refused() -> bool:
        try:
            client(gateway, key).chat.completions.create(model=PAID_MODEL, messages=messages(), max_tokens=5)  # type: ignore[arg-type]
        except openai.AuthenticationError:
            return True
        return False

    poll(refused, timeout=2.0, what="revoked key refused within 2 s")
    with pytest.raises(openai.AuthenticationError):
        client(gateway, "sk-not-a-key").chat.completions.create(model=PAID_MODEL, messages=messages())  # type: ignore[arg-type]
