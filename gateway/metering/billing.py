"""What to hold before a request and what to bill after it (pure; integers only).

Hold: the request's maximum cost at the chosen channel's price — prompt estimate plus the
request's maximum output (``max_tokens``/``max_completion_tokens`` × ``n``, or the configured
cap), times the tier's ``priceMultiplierPercent`` (``newapi_gateway.pricing``).

Bill (:func:`bill_tokens`), per upstream attempt:

* the upstream reported usage: it is authoritative, even when zero;
* a successful answer without usage: the prompt estimate plus an estimate of the output that
  reached the client (the answer's text, UTF-8 bytes / 3; for a stream one token per delivered
  SSE event), capped at the request's maximum output, flagged ``estimated``;
* a stream cut by the client or the upstream: the same, for what was delivered;
* a failed attempt (transport error, failover, an upstream error answer without usage): nothing —
  the hold is released.

BYOK requests cost the operator no tokens: they are priced at zero (hold 0, debit 0; the request
still appears in the usage rollups with its tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from newapi_gateway import jsonutil
from newapi_gateway.pricing import HoldPolicy, estimate_prompt_tokens, max_output_tokens, text_tokens
from newapi_gateway.translate.base import Usage

#: Outcomes of an attempt whose answer (or part of it) reached the client.
DELIVERED = frozenset({"ok", "client_abort", "upstream_abort", "upstream_error"})


@dataclass(slots=True, init=False)  # built on every request: not frozen, and __init__ written out
class RequestEstimate:
    """Token estimate of one request (the same for every channel it may go to)."""

    prompt_tokens: int
    max_output_tokens: int

    def __init__(self, prompt_tokens: int, max_output_tokens: int) -> None:
        # not generated: the dataclass decorator's __init__ stays interpreted in the compiled build
        self.prompt_tokens = prompt_tokens
        self.max_output_tokens = max_output_tokens

    @property
    def tokens(self) -> int:
        """The request's size for the TPM limiter (prompt estimate + maximum output)."""
        return self.prompt_tokens + self.max_output_tokens


def estimate_request(body: dict[str, Any], operation: str, policy: HoldPolicy) -> RequestEstimate:
    return RequestEstimate(estimate_prompt_tokens(body, operation), max_output_tokens(body, operation, policy))


@dataclass(slots=True)
class Bill:
    input_tokens: int
    output_tokens: int
    estimated: bool


def bill_tokens(
    usage: Usage | None,
    outcome: str,
    estimate: RequestEstimate,
    *,
    stream: bool,
    delivered_events: int = 0,
    response_body: bytes | None = None,
) -> Bill | None:
    """Tokens to bill for one attempt, or None to release its hold without charge (module docstring)."""
    if usage is not None and usage.reported:
        if outcome in DELIVERED or usage.total_tokens > 0:
            return Bill(usage.input_tokens, usage.output_tokens, False)
        return None
    if outcome not in DELIVERED:
        return None
    if stream:
        delivered = delivered_events
    elif response_body is not None:
        delivered = answer_text_tokens(response_body)
    else:
        delivered = 0
    return Bill(estimate.prompt_tokens, min(delivered, estimate.max_output_tokens), True)


def answer_text_tokens(body: bytes) -> int:
    """Token estimate of the text in a non-stream answer (OpenAI chat/completions or Anthropic messages)."""
    try:
        doc = jsonutil.loads(body)
    except jsonutil.DecodeError:
        return 0
    if not isinstance(doc, dict):
        return 0
    parts: list[str] = []
    for choice in doc.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                parts.append(message["content"])
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict) and isinstance(call.get("function"), dict):
                    parts.append(str(call["function"].get("arguments") or ""))
        if isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    for block in doc.get("content") or ():
        if isinstance(block, dict):
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif block.get("type") == "tool_use":
                parts.append(jsonutil.dumps(block.get("input") or {}).decode())
    return text_tokens("".join(parts)) if parts else 0
