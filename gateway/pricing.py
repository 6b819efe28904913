"""Pricing: what a request costs and how much to hold for it. Pure functions, integers only.

Prices come from the chosen channel (``Channel.spec.pricing``: micro-credits per 1M input and
output tokens, with per-model overrides keyed by the client-facing model name) and the key's tier
(``TierSpec.priceMultiplierPercent``, in percent).

Rounding rule (documented in docs/metering.md): the exact cost of a request is

    (input_tokens * input_price + output_tokens * output_price) * multiplier_percent
    ------------------------------------------------------------------------------
                                1,000,000 * 100

micro-credits, rounded UP to a whole micro-credit once per request (not per token class).
The reseller never bills below its price list; the customer pays at most 1 micro-credit
(0.000001 credit) more per request than the exact price. No float is involved anywhere.

Hold (maximum cost) for a request = the same formula with the prompt's token ESTIMATE and the
request's maximum output (``max_completion_tokens`` / ``max_tokens`` times ``n``), or the
configured :attr:`HoldPolicy.default_max_output_tokens` when the client set no maximum.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: Fixed estimate for one image part. OpenAI bills a high-detail image at most ~1,100 tokens and
#: Anthropic ~1,600 (1.15 megapixels / 750); the larger keeps the hold on the safe side.
IMAGE_TOKENS = 1_600
#: Per-message framing (role, separators) and reply priming, as in OpenAI's own counting guide.
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
#: UTF-8 bytes per token assumed by the estimate. Real tokenizers average ~4 bytes per token on
#: English and ~1 token per 3-byte character on CJK; 3 covers both without a tokenizer.
BYTES_PER_TOKEN = 3
_IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
#: Chat request fields the model sees as serialized JSON (counted by ``_json_tokens``).
_CHAT_SCHEMA_FIELDS = ("tools", "functions", "response_format")


class ModelPriceLike(Protocol):
    @property
    def input_per_million(self) -> int: ...
    @property
    def output_per_million(self) -> int: ...


class PriceTable(Protocol):
    """Matches ``newapi_operator.api.v1alpha1.PricingSpec`` (and the routing table's copy)."""

    @property
    def input_per_million(self) -> int: ...
    @property
    def output_per_million(self) -> int: ...
    @property
    def models(self) -> Mapping[str, ModelPriceLike]: ...


@dataclass(frozen=True, slots=True)
class Price:
    """Micro-credits per 1,000,000 tokens."""

    input_per_million: int
    output_per_million: int

    def __post_init__(self) -> None:
        for name in ("input_per_million", "output_per_million"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: a price is a non-negative integer of micro-credits, got {value!r}")


def model_price(pricing: PriceTable, model: str) -> Price:
    """The channel's price for a client-facing ``model`` (per-model override, else the default)."""
    override = pricing.models.get(model)
    source: ModelPriceLike = override if override is not None else pricing
    return Price(source.input_per_million, source.output_per_million)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: must be a non-negative integer, got {value!r}")


def cost(price: Price, input_tokens: int, output_tokens: int, multiplier_percent: int = 100) -> int:
    """Micro-credits for the usage, rounded up once per request (see the module docstring)."""
    if not (type(input_tokens) is int and type(output_tokens) is int and type(multiplier_percent) is int
            and input_tokens >= 0 and output_tokens >= 0 and multiplier_percent >= 0):  # the common case, cheaply
        _check_count("input_tokens", input_tokens)
        _check_count("output_tokens", output_tokens)
        _check_count("multiplier_percent", multiplier_percent)
    numerator = (input_tokens * price.input_per_million + output_tokens * price.output_per_million) * multiplier_percent
    return -(-numerator // 100_000_000)  # ceil division, exact for any size


# --------------------------------------------------------------------------------------------
# Estimates for the hold (and the TPM limiter)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    """Operator configuration for holds."""

    #: Output tokens assumed when the request sets no maximum (the "configured cap").
    default_max_output_tokens: int = 4_096

    def __post_init__(self) -> None:
        _check_count("default_max_output_tokens", self.default_max_output_tokens)


@dataclass(frozen=True, slots=True)
class HoldEstimate:
    prompt_tokens: int
    max_output_tokens: int
    amount: int

    @property
    def tokens(self) -> int:
        """The request's token count for the TPM limiter (prompt estimate + maximum output)."""
        return self.prompt_tokens + self.max_output_tokens


def text_tokens(text: str) -> int:
    """Token estimate for a string: UTF-8 bytes / 3, rounded up."""
    # an ASCII string's length is its UTF-8 size (isascii() is O(1): CPython records it)
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return -(-size // BYTES_PER_TOKEN)


def _value_tokens(value: Any) -> int:
    """Walk message content: strings count as text, image parts a fixed amount, other scalars 0."""
    kind = type(value)  # exact types first (parsed JSON): the common case skips isinstance
    if kind is str or isinstance(value, str):
        return text_tokens(value)
    if kind is dict or isinstance(value, dict):
        return _dict_tokens(value)
    if kind is list or isinstance(value, list):
        total = 0
        for v in value:
            total += _value_tokens(v)
        return total
    return 0


def _dict_tokens(value: dict[str, Any]) -> int:
    """A message or content part: an image part counts a fixed amount, else every value but ``type``."""
    if value.get("type") in _IMAGE_PART_TYPES:
        return IMAGE_TOKENS
    total = 0
    for k, v in value.items():
        if k != "type":
            total += text_tokens(v) if type(v) is str else _value_tokens(v)
    return total


def _messages_tokens(messages: Any) -> int:
    """Chat/Messages ``messages``: per-message overhead plus each message's content."""
    total = 0
    for m in messages:
        if isinstance(m, dict):
            total += MESSAGE_OVERHEAD + _dict_tokens(m)
    return total


def _json_tokens(value: Any) -> int:
    """Schema-like fields (tools, response_format) as the model sees them: serialized JSON."""
    if value is None:
        return 0
    return text_tokens(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _input_tokens(value: Any) -> int:
    """``prompt`` / ``input``: a string, strings, token ids, or lists of token ids."""
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return len(value)  # already tokens
        return sum(_input_tokens(v) for v in value)
    return 0


def estimate_prompt_tokens(body: dict[str, Any], operation: str) -> int:
    """Prompt token estimate for ``operation`` in ``chat``, ``completions``, ``embeddings``, ``messages``."""
    if operation == "embeddings":
        return _input_tokens(body.get("input"))
    if operation == "completions":
        return _input_tokens(body.get("prompt")) + _input_tokens(body.get("suffix"))
    if operation == "chat":
        total = REPLY_PRIMING + _messages_tokens(body.get("messages") or ())
        for field in _CHAT_SCHEMA_FIELDS:
            value = body.get(field)
            if value is not None:
                total += _json_tokens(value)
        return total
    if operation == "messages":
        total = REPLY_PRIMING + _value_tokens(body.get("system"))
        total += _messages_tokens(body.get("messages") or ())
        return total + _json_tokens(body.get("tools"))
    raise ValueError(f"operation: unknown {operation!r} (chat, completions, embeddings or messages)")


def _positive_int(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value if value > 0 else None
    return None


def max_output_tokens(body: dict[str, Any], operation: str, policy: HoldPolicy) -> int:
    """Most output tokens the request can produce: its own maximum times choices, or the policy's."""
    if operation == "embeddings":
        return 0
    if operation == "chat":
        limit = _positive_int(body.get("max_completion_tokens")) or _positive_int(body.get("max_tokens"))
    else:
        limit = _positive_int(body.get("max_tokens"))
    if limit is None:
        limit = policy.default_max_output_tokens
    n = body.get("n")
    choices = 1 if n is None else (_positive_int(n) or 1)
    if operation == "completions":
        choices = max(choices, _positive_int(body.get("best_of")) or 1)
    return limit * choices


def estimate_hold(
    body: dict[str, Any],
    operation: str,
    price: Price,
    multiplier_percent: int = 100,
    policy: HoldPolicy | None = None,
) -> HoldEstimate:
    """The maximum cost of the request at ``price``: what ``Store.authorize`` should hold."""
    policy = policy or HoldPolicy()
    prompt = estimate_prompt_tokens(body, operation)
    output = max_output_tokens(body, operation, policy)
    return HoldEstimate(prompt, output, cost(price, prompt, output, multiplier_percent))


def settle_usage(
    reported_input: int | None,
    reported_output: int | None,
    estimate: HoldEstimate,
    delivered_output_estimate: int | None = None,
) -> tuple[int, int, bool]:
    """Tokens to bill: the upstream's usage when it reported any (authoritative, even when zero),
    else ``(prompt estimate, delivered_output_estimate or 0, estimated=True)``.

    ``delivered_output_estimate`` is the HTTP layer's count of what actually reached the client
    (e.g. ``text_tokens`` of the streamed text when a stream was cut without a usage chunk).
    """
    if reported_input is not None or reported_output is not None:
        return reported_input or 0, reported_output or 0, False
    return estimate.prompt_tokens, delivered_output_estimate or 0, True
