"""The 10,000-key measurement's pure parts (hack/bench/gatewaybench/keylookup.py): the signup body
is one the admin API accepts, the wrk script draws from every key, the summaries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "hack" / "bench"
sys.path.insert(0, str(BENCH_DIR))

from gatewaybench import comparison, keylookup, scenarios  # noqa: E402

from newapi_gateway.admin import schemas  # noqa: E402


def test_signup_body_is_a_valid_admin_signup() -> None:
    body = keylookup.signup_body(42)
    signup = schemas.signup(body)  # the admin API's own validation
    assert signup.external_id == "kl-00042"
    assert signup.idempotency_key == "signup-kl-00042"
    assert signup.credit_grant == keylookup.KEY_CREDIT
    assert signup.attributes.settings.tier == scenarios.FULLPATH_TIER
    assert signup.attributes.settings.rpm == scenarios.FULLPATH_LIMITS["rpm"]
    assert keylookup.signup_body(7)["externalId"] != body["externalId"]


def test_random_key_script_carries_every_key_and_the_result_hook() -> None:
    keys = [f"sk-test-{i:04d}" for i in range(300)] + ['sk-"odd"\\key']
    script = keylookup.random_key_lua(keys, '{"model": "m"}')
    for key in keys[:300]:
        assert f'"{key}",' in script or f'"{key}"\n' in script
    assert '"sk-\\"odd\\"\\\\key"' in script  # escaped for Lua
    assert "request = function()" in script
    assert "keys[math.random(#keys)]" in script
    assert '"Bearer " .. key' in script
    assert "BENCH_JSON" in script  # the done hook wrk.parse_output reads
    assert 'wrk.body = "{\\"model\\": \\"m\\"}"' in script


def test_random_key_script_needs_keys() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        keylookup.random_key_lua([], "{}")


def test_pair_and_memory_summaries() -> None:
    pairs = keylookup.PairTimings(cold_ns=[2_000_000, 3_000_000, 4_000_000], warm_ns=[1_000_000] * 3, errors=1)
    summary = keylookup.pair_summary(pairs)
    assert summary["n"] == 3
    assert summary["errors"] == 1
    assert summary["cold"]["p50"] == 3.0
    assert summary["warm"]["p50"] == 1.0
    assert summary["cold_minus_warm_p50_ms"] == 2.0
    assert keylookup.pair_summary(keylookup.PairTimings([], [], 5)) == {"n": 0, "errors": 5}
    memory = keylookup.memory_summary(empty_kb=80_000, created_kb=81_000, after_kb=91_000, count=10_000)
    assert memory["bytes_per_key_after_lookups"] == 1024
    assert memory["rss_mib_after_lookups"] == round(91_000 / 1024, 1)
    text = comparison.keylookup_text({
        "keys": 10_000, "backend": "PostgreSQL + Redis (full path)",
        "create": {"seconds": 30.0, "keys_per_s": 333.3}, "pairs": summary,
        "random_keys_c32": {"rps": 1500.0, "latency_ms": {"p50": 20.0, "p99": 50.0}, "errors": {"status": 0}},
        "memory": memory})
    assert "10,000 keys" in text
    assert "1024 bytes/key" in text


def test_signup_chunks_cover_every_index_once_with_the_first_alone() -> None:
    for count, workers in ((10_000, 16), (17, 16), (2, 16), (1, 4), (0, 4), (100, 1)):
        head, rest = keylookup.signup_chunks(count, workers)
        assert list(head) == ([0] if count else [])
        assert len(rest) <= workers
        indices = [*head, *(i for chunk in rest for i in chunk)]
        assert indices == list(range(count))
    with pytest.raises(ValueError, match="workers >= 1"):
        keylookup.signup_chunks(10, 0)
