"""OpenAI wire format (also vLLM / openai-compatible): bodies, stream chunks and errors.

Pure builders of the JSON objects OpenAI's API returns, following its API reference:
``chat.completion`` and ``chat.completion.chunk`` objects (the ``usage`` chunk with empty
``choices`` when ``stream_options.include_usage`` is true, ``usage: null`` on the other chunks),
``text_completion``, ``embedding`` lists, ``model`` lists and ``{"error": {message, type, param,
code}}`` error bodies with OpenAI's messages and codes.
"""

from __future__ import annotations

import json
from typing import Any

from .behavior import UsageMode
from .content import Reply, json_fragments

FINISH_REASONS = {"stop": "stop", "length": "length", "tool": "tool_calls"}


def dumps(obj: Any) -> bytes:
    """Compact JSON, as OpenAI sends it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def sse(obj: Any) -> bytes:
    """One SSE event: ``data: {json}`` and a blank line."""
    return b"data: " + dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """An OpenAI error body."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def mask_key(key: str) -> str:
    """How OpenAI shows a wrong key in its 401 message: a few first and the last 4 characters."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def missing_key_error() -> dict[str, Any]:
    return error(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using "
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
        "you're accessing the API from your browser and are prompted for a username and password. You can "
        "obtain an API key from https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
    )


def invalid_key_error(key: str) -> dict[str, Any]:
    return error(
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        code="invalid_api_key",
    )


def model_not_found_error(model: str) -> dict[str, Any]:
    return error(
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        code="model_not_found",
    )


def invalid_url_error(method: str, path: str) -> dict[str, Any]:
    return error(f"Invalid URL ({method} {path})", "invalid_request_error")


def invalid_json_error() -> dict[str, Any]:
    return error(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
        "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. "
        "If you have trouble figuring out how to fix this, please contact us through our help center at "
        "help.openai.com.)",
        "invalid_request_error",
    )


def missing_param_error(param: str) -> dict[str, Any]:
    return error(
        f"Missing required parameter: '{param}'.", "invalid_request_error", "missing_required_parameter", param
    )


def invalid_param_error(param: str, message: str) -> dict[str, Any]:
    return error(message, "invalid_request_error", "invalid_value", param)


def status_error(
    status: int, model: str | None, key: str, message: str | None = None, retry_after: float = 1.0
) -> dict[str, Any]:
    """The error body OpenAI sends with ``status`` (an injected failure)."""
    if status == 401:
        body = invalid_key_error(key) if key else missing_key_error()
    elif status == 403:
        body = error(
            "Country, region, or territory not supported", "request_forbidden", "unsupported_country_region_territory"
        )
    elif status == 404 and model:
        body = model_not_found_error(model)
    elif status == 429:
        body = error(
            f"Rate limit reached for {model or 'requests'} in organization org-demo on requests per min (RPM): "
            f"Limit 3, Used 3, Requested 1. Please try again in {retry_after:g}s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "requests",
            "rate_limit_exceeded",
        )
    elif status == 500:
        body = error("The server had an error while processing your request. Sorry about that!", "server_error")
    elif status == 503:
        body = error("The engine is currently overloaded, please try again later.", "server_error")
    elif status >= 500:
        body = error(f"demo upstream: injected error (HTTP {status})", "server_error")
    else:
        body = error(f"demo upstream: injected error (HTTP {status})", "invalid_request_error")
    if message is not None:
        body["error"]["message"] = message
    return body


def stream_error(message: str | None = None) -> dict[str, Any]:
    """The event OpenAI sends when a stream fails after it started."""
    return error(message or "The server had an error while processing your request. Sorry about that!", "server_error")


# --------------------------------------------------------------------------------------------
# Usage
# --------------------------------------------------------------------------------------------


def usage(input_tokens: int, output_tokens: int, mode: UsageMode) -> dict[str, Any]:
    """A chat/completions ``usage`` object (all zero in ``zero`` mode)."""
    if mode == "zero":
        input_tokens = output_tokens = 0
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# --------------------------------------------------------------------------------------------
# Chat completions
# --------------------------------------------------------------------------------------------


def _tool_calls(reply: Reply, call_id: str) -> list[dict[str, Any]]:
    assert reply.tool is not None
    return [
        {"id": call_id, "type": "function", "function": {"name": reply.tool.name, "arguments": reply.tool.arguments}}
    ]


def chat_completion(
    reply: Reply, *, rid: str, created: int, model: str, fingerprint: str, usage_mode: UsageMode
) -> dict[str, Any]:
    """A non-stream ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.tool is None else None,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool is not None:
        message["tool_calls"] = _tool_calls(reply, f"call_{rid}")
    body: dict[str, Any] = {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH_REASONS[reply.stop]}],
    }
    if usage_mode != "omit":
        body["usage"] = usage(reply.input_tokens, reply.output_tokens, usage_mode)
    body["service_tier"] = "default"
    body["system_fingerprint"] = fingerprint
    return body


def chat_chunks(
    reply: Reply,
    *,
    rid: str,
    created: int,
    model: str,
    fingerprint: str,
    include_usage: bool,
    usage_mode: UsageMode,
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a stream, in order (without ``[DONE]``)."""
    with_usage = include_usage and usage_mode != "omit"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"chatcmpl-{rid}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if with_usage:
            out["usage"] = None
        return out

    chunks: list[dict[str, Any]] = []
    if reply.tool is None:
        chunks.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        chunks.extend(chunk({"content": piece}) for piece in reply.pieces)
    else:
        first = {
            "index": 0,
            "id": f"call_{rid}",
            "type": "function",
            "function": {"name": reply.tool.name, "arguments": ""},
        }
        chunks.append(chunk({"role": "assistant", "content": None, "tool_calls": [first], "refusal": None}))
        chunks.extend(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]})
            for frag in json_fragments(reply.tool.arguments)
        )
    chunks.append(chunk({}, FINISH_REASONS[reply.stop]))
    if with_usage:
        last = chunk({})
        last["choices"] = []
        last["usage"] = usage(reply.input_tokens, reply.output_tokens, usage_mode)
        chunks.append(last)
    return chunks


# --------------------------------------------------------------------------------------------
# Legacy completions
# --------------------------------------------------------------------------------------------


def completion(
    replies: list[Reply], *, rid: str, created: int, model: str, fingerprint: str, usage_mode: UsageMode
) -> dict[str, Any]:
    """A non-stream ``text_completion`` object, one choice per prompt."""
    body: dict[str, Any] = {
        "id": f"cmpl-{rid}",
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [
            {"text": r.text, "index": i, "logprobs": None, "finish_reason": FINISH_REASONS[r.stop]}
            for i, r in enumerate(replies)
        ],
    }
    if usage_mode != "omit":
        body["usage"] = usage(sum(r.input_tokens for r in replies), sum(r.output_tokens for r in replies), usage_mode)
    return body


def completion_chunks(
    replies: list[Reply],
    *,
    rid: str,
    created: int,
    model: str,
    fingerprint: str,
    include_usage: bool,
    usage_mode: UsageMode,
) -> list[dict[str, Any]]:
    """The ``text_completion`` stream chunks (without ``[DONE]``)."""
    with_usage = include_usage and usage_mode != "omit"

    def chunk(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"cmpl-{rid}",
            "object": "text_completion",
            "created": created,
            "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
            "model": model,
            "system_fingerprint": fingerprint,
        }
        if with_usage:
            out["usage"] = None
        return out

    chunks: list[dict[str, Any]] = []
    for index, reply in enumerate(replies):
        chunks.extend(chunk(index, piece) for piece in reply.pieces)
        chunks.append(chunk(index, "", FINISH_REASONS[reply.stop]))
    if with_usage:
        last = chunk(0, "")
        last["choices"] = []
        last["usage"] = usage(sum(r.input_tokens for r in replies), sum(r.output_tokens for r in replies), usage_mode)
        chunks.append(last)
    return chunks


# --------------------------------------------------------------------------------------------
# Embeddings and models
# --------------------------------------------------------------------------------------------


def embeddings(data: list[list[float] | str], *, model: str, tokens: int, usage_mode: UsageMode) -> dict[str, Any]:
    """An embeddings ``list`` (each item a float list or a base64 string)."""
    body: dict[str, Any] = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vec} for i, vec in enumerate(data)],
        "model": model,
    }
    if usage_mode != "omit":
        n = 0 if usage_mode == "zero" else tokens
        body["usage"] = {"prompt_tokens": n, "total_tokens": n}
    return body


def models(names: list[str], created: int) -> dict[str, Any]:
    """``GET /v1/models``."""
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "demo-upstream"} for name in names],
    }
