"""Routing (pure): model -> ordered candidates, with the seed's tier table and an injected RNG."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from newapi_gateway.keys import KeyInfo
from newapi_gateway.routing import RoutingError, models_for, plan
from newapi_gateway.snapshot import compile_snapshot

from .gateway_fixtures import SEED_TIERS, channel, table

CREDS = {"anthropic-key": "sk-ant-operator", "openai-key": "sk-operator"}


def seed_snapshot():  # type: ignore[no-untyped-def]
    t = table(
        [
            channel("vllm-qwen", ["qwen3-32b"], priority=0),
            channel("anthropic-main", ["claude-3-opus", "claude-3-sonnet", "claude-3-haiku"], type="anthropic",
                    endpoint="https://api.anthropic.com", credential="anthropic-key", priority=10,
                    modelMapping={"claude-3-haiku": "claude-3-haiku-20240307"}),
            channel("openai-main", ["gpt-4"], type="openai-compatible", endpoint="https://api.openai.com/v1",
                    credential="openai-key"),
            channel("byok", ["gpt-4", "claude-3-opus"], type="byok-passthrough",
                    allowedProviders=["openai", "anthropic"]),
        ],
        {"tiers": SEED_TIERS},
    )
    return compile_snapshot(t, CREDS)


def key(tier: str, models: tuple[str, ...] = ()) -> KeyInfo:
    return KeyInfo(key_id="k", customer_id="c", tier=tier, allowed_models=frozenset(models))


@pytest.mark.parametrize(
    ("tier", "requested", "served", "channels"),
    [
        ("free", "claude-3-opus", "qwen3-32b", ["vllm-qwen"]),
        ("free", "gpt-4", "qwen3-32b", ["vllm-qwen"]),
        ("free", "qwen3-32b", "qwen3-32b", ["vllm-qwen"]),
        ("pro", "claude-3-opus", "claude-3-haiku", ["anthropic-main"]),
        ("pro", "claude-3-haiku", "claude-3-haiku", ["anthropic-main"]),
        ("pro", "gpt-4", "qwen3-32b", ["vllm-qwen"]),
        ("enterprise", "claude-3-opus", "claude-3-opus", ["anthropic-main"]),
        ("enterprise", "gpt-4", "gpt-4", ["openai-main"]),
    ],
)
def test_seed_tier_downgrades(tier: str, requested: str, served: str, channels: list[str]) -> None:
    p = plan(seed_snapshot(), requested, key(tier), random.Random(1))
    assert (p.requested, p.served) == (requested, served)
    assert [c.name for c in p.candidates] == channels


def test_free_tier_never_reaches_a_commercial_channel() -> None:
    snap = seed_snapshot()
    with pytest.raises(RoutingError) as info:
        plan(snap, "claude-3-haiku", key("free"), random.Random(1))  # not downgraded, not in-cluster
    assert info.value.kind == "model_not_found"


def test_model_mapping_gives_the_upstream_name() -> None:
    p = plan(seed_snapshot(), "claude-3-haiku", key("pro"), random.Random(1))
    assert p.candidates[0].upstream_model(p.served) == "claude-3-haiku-20240307"
    assert p.candidates[0].auth_headers == {"x-api-key": "sk-ant-operator"}


def test_unknown_model_and_unknown_tier() -> None:
    snap = seed_snapshot()
    with pytest.raises(RoutingError) as info:
        plan(snap, "nope", key("enterprise"), random.Random(1))
    assert info.value.kind == "model_not_found"
    assert "`nope`" in info.value.message
    with pytest.raises(RoutingError) as info:
        plan(snap, "gpt-4", key("platinum"), random.Random(1))
    assert info.value.kind == "tier_unknown"


def test_key_and_tier_allowed_models_restrict() -> None:
    snap = seed_snapshot()
    with pytest.raises(RoutingError):
        plan(snap, "gpt-4", key("enterprise", ("qwen3-32b",)), random.Random(1))
    assert plan(snap, "qwen3-32b", key("enterprise", ("qwen3-32b",)), random.Random(1)).served == "qwen3-32b"
    t = table([channel("a", ["m1", "m2"])], {"tiers": {"basic": {"allowedModels": ["m1"]}}})
    s = compile_snapshot(t, {})
    assert plan(s, "m1", key("basic"), random.Random(1)).served == "m1"
    with pytest.raises(RoutingError):
        plan(s, "m2", key("basic"), random.Random(1))


def test_tier_allowed_channels_and_channel_tiers() -> None:
    t = table(
        [channel("a", ["m"], priority=5, tiers=["gold"]), channel("b", ["m"]), channel("c", ["m"])],
        {"tiers": {"gold": {}, "silver": {"allowedChannels": ["c"]}}},
    )
    s = compile_snapshot(t, {})
    assert next(c.name for c in plan(s, "m", key("gold"), random.Random(1)).candidates) == "a"
    assert [c.name for c in plan(s, "m", key("silver"), random.Random(1)).candidates] == ["c"]


def test_priority_groups_in_order_and_weighted_random_inside() -> None:
    t = table([
        channel("hi-1", ["m"], priority=10, weight=3),
        channel("hi-2", ["m"], priority=10, weight=1),
        channel("lo", ["m"], priority=1),
    ])
    s = compile_snapshot(t, {})
    rng = random.Random(42)
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        names = [c.name for c in plan(s, "m", key(""), rng).candidates]
        assert sorted(names[:2]) == ["hi-1", "hi-2"]
        assert names[2] == "lo"
        firsts[names[0]] += 1
    assert 0.70 < firsts["hi-1"] / 4000 < 0.80  # weight 3 of 4


def test_injected_rng_makes_the_order_reproducible() -> None:
    t = table([channel(f"c{i}", ["m"], weight=i + 1) for i in range(5)])
    s = compile_snapshot(t, {})
    a = [[c.name for c in plan(s, "m", key(""), random.Random(7)).candidates] for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_byok_routes_only_to_byok_channels_with_the_provider() -> None:
    snap = seed_snapshot()
    p = plan(snap, "gpt-4", key("enterprise"), random.Random(1), byok=True, byok_provider="openai")
    assert [c.name for c in p.candidates] == ["byok"]
    with pytest.raises(RoutingError):
        plan(snap, "gpt-4", key("enterprise"), random.Random(1), byok=True, byok_provider="google")
    # a normal request never lands on the byok channel
    assert "byok" not in [c.name for c in plan(snap, "gpt-4", key("enterprise"), random.Random(1)).candidates]


def test_channels_missing_their_credential_are_left_out() -> None:
    t = seed_snapshot().table
    s = compile_snapshot(t, {"openai-key": "x"})
    assert s.unusable == {"anthropic-main": "credential 'anthropic-key' is not in the upstream credentials"}
    with pytest.raises(RoutingError):
        plan(s, "claude-3-opus", key("enterprise"), random.Random(1))


def test_models_listing_per_key() -> None:
    snap = seed_snapshot()
    assert models_for(snap, key("free")) == ["claude-3-opus", "claude-3-sonnet", "gpt-4", "qwen3-32b"]
    assert "claude-3-haiku" in models_for(snap, key("pro"))
    assert models_for(snap, key("enterprise", ("gpt-4", "nope"))) == ["gpt-4"]
    assert models_for(snap, key("platinum")) == []


def test_no_tiers_means_no_tier_restrictions() -> None:
    s = compile_snapshot(table([channel("a", ["m"])]), {})
    assert plan(s, "m", key("anything"), random.Random(1)).served == "m"
