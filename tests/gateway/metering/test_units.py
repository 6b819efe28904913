"""Pure parts of the metering layer: state configuration, billing rules, error shapes, key ids."""

from __future__ import annotations

import json

import pytest

from newapi_gateway.limits import LimitDecision
from newapi_gateway.metering.billing import Bill, RequestEstimate, answer_text_tokens, bill_tokens, estimate_request
from newapi_gateway.metering.config import InvalidStateConfig, redact, resolve_state
from newapi_gateway.metering.errors import insufficient_credit, rate_limited, spending_cap, store_unavailable
from newapi_gateway.metering.ids import format_key_id, parse_key_id
from newapi_gateway.metering.runtime import expiry_interval
from newapi_gateway.pricing import HoldPolicy
from newapi_gateway.store import InsufficientCredit, SpendingCapExceeded, StoreUnavailable
from newapi_gateway.translate.base import Usage

# -- configuration ---------------------------------------------------------------------------------


def test_database_defaults_to_sqlite_under_the_state_dir() -> None:
    cfg = resolve_state(None, None, "/var/lib/newapi", env={})
    assert (cfg.backend, cfg.sqlite_path, cfg.redis_url, cfg.database_source) == (
        "sqlite", "/var/lib/newapi/newapi.db", None, "default")


def test_flag_wins_over_env_and_env_order() -> None:
    env = {"SQL_DSN": "postgresql://u:p@db:5432/a", "NEWAPI_DATABASE_URL": "postgresql://u:p@db2:5432/b",
           "VALKEY_URL": "redis://valkey:6379/0"}
    cfg = resolve_state(None, None, ".", env=env)
    assert (cfg.dsn, cfg.database_source) == ("postgresql://u:p@db2:5432/b", "NEWAPI_DATABASE_URL")
    assert (cfg.redis_url, cfg.redis_source) == ("redis://valkey:6379/0", "VALKEY_URL")
    only_operator = resolve_state(None, None, ".", env={"SQL_DSN": "postgres://u@db/x"})
    assert (only_operator.backend, only_operator.database_source) == ("postgres", "SQL_DSN")
    flag = resolve_state("sqlite:///data/gw.db", "redis://r:1/2", ".", env=env)
    assert (flag.backend, flag.sqlite_path, flag.redis_url) == ("sqlite", "data/gw.db", "redis://r:1/2")
    assert resolve_state("sqlite:////abs/gw.db", None, ".", env={}).sqlite_path == "/abs/gw.db"
    assert resolve_state(None, "valkey://v:6379/0", ".", env={}).redis_url == "redis://v:6379/0"


@pytest.mark.parametrize(("db", "redis", "needle"), [
    ("mysql://x@y/z", None, "--database-url: unsupported database URL"),
    ("sqlite://", None, "names no file"),
    ("postgresql:///db", None, "has no host"),
    (None, "http://redis:6379", "--redis-url: unsupported Redis URL"),
])
def test_bad_urls_name_the_option(db: str | None, redis: str | None, needle: str) -> None:
    with pytest.raises(InvalidStateConfig, match=needle):
        resolve_state(db, redis, ".", env={})


def test_passwords_never_appear_in_descriptions() -> None:
    cfg = resolve_state("postgresql://gw:s3cret@db:5432/newapi", "redis://:hunter2@r:6379/0", ".", env={})
    text = json.dumps(cfg.describe())
    assert "s3cret" not in text
    assert "hunter2" not in text
    assert redact("postgresql://gw:s3cret@db:5432/newapi") == "postgresql://gw:***@db:5432/newapi"


# -- billing ---------------------------------------------------------------------------------------

EST = RequestEstimate(prompt_tokens=20, max_output_tokens=100)


def test_reported_usage_is_authoritative_even_when_zero() -> None:
    assert bill_tokens(Usage(7, 9, reported=True), "ok", EST, stream=False) == Bill(7, 9, False)
    assert bill_tokens(Usage(0, 0, reported=True), "ok", EST, stream=True) == Bill(0, 0, False)
    # a stream cut after its usage arrived bills that usage
    assert bill_tokens(Usage(7, 3, reported=True), "client_abort", EST, stream=True) == Bill(7, 3, False)


def test_missing_usage_is_estimated_from_what_was_delivered() -> None:
    body = json.dumps({"choices": [{"message": {"content": "abcdefghi"}}]}).encode()  # 9 bytes -> 3 tokens
    assert bill_tokens(Usage(), "ok", EST, stream=False, response_body=body) == Bill(20, 3, True)
    assert bill_tokens(Usage(), "client_abort", EST, stream=True, delivered_events=12) == Bill(20, 12, True)
    assert bill_tokens(Usage(), "upstream_abort", EST, stream=True, delivered_events=500) == Bill(20, 100, True)


def test_failed_attempts_release() -> None:
    assert bill_tokens(None, "timeout", EST, stream=False) is None
    assert bill_tokens(None, "upstream_400", EST, stream=False) is None
    assert bill_tokens(Usage(), "upstream_429", EST, stream=True) is None
    # an upstream error that still reports billable usage is billed
    assert bill_tokens(Usage(5, 1, reported=True), "upstream_400", EST, stream=True) == Bill(5, 1, False)


def test_answer_text_of_each_wire_format() -> None:
    openai_chat = {"choices": [{"message": {"content": "abc", "tool_calls": [{"function": {"arguments": "xyz"}}]}}]}
    legacy = {"choices": [{"text": "abcdef"}]}
    anthropic = {"content": [{"type": "text", "text": "abc"}, {"type": "tool_use", "input": {}}]}
    assert answer_text_tokens(json.dumps(openai_chat).encode()) == 2
    assert answer_text_tokens(json.dumps(legacy).encode()) == 2
    assert answer_text_tokens(json.dumps(anthropic).encode()) == 2
    assert answer_text_tokens(b"not json") == 0


def test_estimate_uses_the_configured_cap_without_max_tokens() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert estimate_request(body, "chat", HoldPolicy(default_max_output_tokens=77)).max_output_tokens == 77
    assert estimate_request({**body, "max_tokens": 5, "n": 2}, "chat", HoldPolicy()).max_output_tokens == 10


# -- errors ----------------------------------------------------------------------------------------


def test_insufficient_quota_has_openais_shape() -> None:
    err = insufficient_credit(InsufficientCredit(available=-5, required=1_500_000))
    assert err.status == 429
    body = err.openai_body()["error"]
    assert (body["type"], body["code"], body["param"]) == ("insufficient_quota", "insufficient_quota", None)
    assert "1.500000 credits" in body["message"]
    assert "0.000000 are available" in body["message"]
    assert err.headers == {"x-should-retry": "false"}
    cap = spending_cap(SpendingCapExceeded("monthly", 1_000_000, 900_000, 200_000))
    assert cap.openai_body()["error"]["code"] == "insufficient_quota"
    assert "monthly spending cap" in cap.message


def test_rate_limit_error_types() -> None:
    rpm = LimitDecision(False, "rpm", limit_requests=2, remaining_requests=0, reset_requests=30.0, retry_after=30.0)
    err = rate_limited(rpm)
    assert (err.type, err.code, err.headers["Retry-After"]) == ("requests", "rate_limit_exceeded", "30")  # type: ignore[index]
    quota = LimitDecision(False, "quota", daily_quota=10, remaining_quota=0, reset_quota=60.0, retry_after=60.0)
    assert rate_limited(quota).code == "daily_quota_exceeded"
    big = LimitDecision(False, "too_large", limit_tokens=100, remaining_tokens=100, reset_tokens=0.0)
    too_large = rate_limited(big)
    assert too_large.type == "tokens"
    assert too_large.headers is not None
    assert "Retry-After" not in too_large.headers


def test_store_unavailable_is_a_clear_503() -> None:
    err = store_unavailable(StoreUnavailable("postgresql", "connection refused"))
    assert (err.status, err.type, err.code) == (503, "server_error", "store_unavailable")
    assert "connection refused" not in err.message  # infrastructure details stay in the log


def test_key_ids_and_expiry_interval() -> None:
    assert format_key_id(42) == "key_42"
    assert parse_key_id("key_42") == 42
    for bad in ("42", "key_", "key_042", "key_-1", "key_4x", "key_" + "9" * 30, "key_١٢"):
        assert parse_key_id(bad) is None, bad
    assert expiry_interval(600) == 10.0
    assert expiry_interval(2) == 0.5
