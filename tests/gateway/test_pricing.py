"""Pricing: integer cost with one documented rounding, hold estimates, property-style checks."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from newapi_gateway import pricing
from newapi_gateway.money import format_credits, parse_credits
from newapi_gateway.pricing import (
    IMAGE_TOKENS,
    HoldPolicy,
    Price,
    cost,
    estimate_hold,
    estimate_prompt_tokens,
    max_output_tokens,
    model_price,
    settle_usage,
    text_tokens,
)
from newapi_operator.api.v1alpha1 import ModelPrice, PricingSpec

#: The mypyc build of the metering modules (setup.py), as installed by the test command.
COMPILED = not pricing.__file__.endswith(".py")

PRICING = PricingSpec(
    input_per_million=150_000,  # 0.15 credit per 1M input tokens
    output_per_million=600_000,
    models={"big": ModelPrice(input_per_million=3_000_000, output_per_million=15_000_000)},
)


def test_model_price_uses_the_override_else_the_channel_default() -> None:
    assert model_price(PRICING, "big") == Price(3_000_000, 15_000_000)
    assert model_price(PRICING, "small") == Price(150_000, 600_000)


def test_cost_examples() -> None:
    p = Price(150_000, 600_000)
    assert cost(p, 1_000_000, 0) == 150_000
    assert cost(p, 1_000, 500) == 450  # 150 + 300 exactly
    assert cost(p, 1, 0) == 1  # 0.15 micro-credit rounds UP to 1
    assert cost(p, 0, 0) == 0
    assert cost(p, 1_000, 500, multiplier_percent=150) == 675
    assert cost(p, 1_000, 500, multiplier_percent=0) == 0
    assert cost(Price(0, 0), 10**9, 10**9) == 0
    # Rounded once per request, not per token class: 0.15 + 0.6 = 0.75 -> 1 (not 1 + 1).
    assert cost(p, 1, 1) == 1


def test_cost_rejects_non_integers() -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        cost(Price(1, 1), -1, 0)
    with pytest.raises(ValueError, match="price"):
        Price(-1, 0)
    # A float never becomes money. The interpreted module's own check names the field; the
    # compiled build (setup.py: mypyc enforces the annotations) refuses the float at the call.
    error, text = (TypeError, "int object expected") if COMPILED else (ValueError, "output_tokens")
    with pytest.raises(error, match=text):
        cost(Price(1, 1), 0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(error, match=text if COMPILED else "price"):
        Price(0.5, 0)  # type: ignore[arg-type]


def test_cost_properties_on_random_inputs() -> None:
    rng = random.Random(20240501)
    for _ in range(5_000):
        p = Price(rng.randrange(0, 100_000_000), rng.randrange(0, 100_000_000))
        i, o = rng.randrange(0, 2_000_000), rng.randrange(0, 2_000_000)
        m = rng.choice([0, 50, 100, 125, 100 * rng.randrange(1, 100)])
        c = cost(p, i, o, m)
        exact = Fraction((i * p.input_per_million + o * p.output_per_million) * m, 100_000_000)
        assert isinstance(c, int)
        assert exact <= c < exact + 1  # ceil: never below the price list, at most 1 micro-credit above
        assert cost(p, i + 1, o, m) >= c  # monotone in tokens
        assert cost(p, i, o + 1, m) >= c
        assert cost(p, i, o, m + 1) >= c  # monotone in the multiplier
        j = rng.randrange(0, i + 1)
        split = cost(p, j, 0, m) + cost(p, i - j, o, m)
        assert c <= split <= c + 1  # splitting a request can gain at most one micro-credit of rounding


def test_prompt_estimates_per_operation() -> None:
    chat = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 300_000}},
            ]},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }
    est = estimate_prompt_tokens(chat, "chat")
    # the base64 image counts as one image, not as 100k tokens of text
    assert IMAGE_TOKENS < est < IMAGE_TOKENS + 100
    assert estimate_prompt_tokens({"prompt": "abc" * 10}, "completions") == 10
    assert estimate_prompt_tokens({"prompt": [1, 2, 3, 4]}, "completions") == 4  # token ids count exactly
    assert estimate_prompt_tokens({"input": ["hello", [5, 6, 7]]}, "embeddings") == 2 + 3
    anthropic = {"system": [{"type": "text", "text": "x" * 30}], "messages": [{"role": "user", "content": "y" * 30}]}
    assert estimate_prompt_tokens(anthropic, "messages") == 3 + 10 + 4 + 10 + 2  # +2: the role "user"
    assert text_tokens("日本語") == 3  # 9 bytes: one token per CJK character
    with pytest.raises(ValueError, match="operation"):
        estimate_prompt_tokens({}, "images")


def test_max_output_and_hold() -> None:
    policy = HoldPolicy(default_max_output_tokens=1_000)
    assert max_output_tokens({"max_tokens": 50}, "chat", policy) == 50
    assert max_output_tokens({"max_completion_tokens": 70, "max_tokens": 50}, "chat", policy) == 70
    assert max_output_tokens({"max_tokens": 50, "n": 3}, "chat", policy) == 150
    assert max_output_tokens({}, "chat", policy) == 1_000  # the configured cap when absent
    assert max_output_tokens({"max_tokens": 0}, "messages", policy) == 1_000
    assert max_output_tokens({"max_tokens": 10, "best_of": 4}, "completions", policy) == 40
    assert max_output_tokens({"max_tokens": 10}, "embeddings", policy) == 0
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    hold = estimate_hold(body, "chat", Price(1_000_000, 2_000_000), 100, policy)
    assert hold.max_output_tokens == 100
    assert hold.tokens == hold.prompt_tokens + 100
    assert hold.amount == cost(Price(1_000_000, 2_000_000), hold.prompt_tokens, 100)
    rng = random.Random(7)
    for _ in range(500):  # the hold always covers the cost of any usage within the estimate
        used_in, used_out = rng.randrange(0, hold.prompt_tokens + 1), rng.randrange(0, 101)
        assert cost(Price(1_000_000, 2_000_000), used_in, used_out) <= hold.amount


def test_settle_usage_prefers_reported_usage_even_zero() -> None:
    est = estimate_hold({"prompt": "x" * 30, "max_tokens": 5}, "completions", Price(1, 1))
    assert settle_usage(0, 0, est) == (0, 0, False)
    assert settle_usage(12, None, est) == (12, 0, False)
    assert settle_usage(None, None, est, delivered_output_estimate=3) == (10, 3, True)


def test_credit_strings_are_exact() -> None:
    assert format_credits(1_234_567) == "1.234567"
    assert format_credits(-5) == "-0.000005"
    assert format_credits(2_000_000) == "2.000000"
    assert parse_credits("12.5") == 12_500_000
    assert parse_credits(" 0.000001 ") == 1
    assert parse_credits("-3") == -3_000_000
    with pytest.raises(ValueError, match="6 decimal places"):
        parse_credits("0.0000001")
    with pytest.raises(ValueError, match="not a credit amount"):
        parse_credits("ten")
    with pytest.raises(TypeError):
        format_credits(1.0)  # type: ignore[arg-type]
    rng = random.Random(3)
    for _ in range(1_000):
        n = rng.randrange(-10**15, 10**15)
        assert parse_credits(format_credits(n)) == n
