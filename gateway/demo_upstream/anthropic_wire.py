"""Anthropic Messages API wire format: bodies, SSE events and errors.

Pure builders following Anthropic's API reference: the ``message`` object (text and
``tool_use`` content blocks, ``stop_reason``, ``usage``), the stream's event sequence
(``message_start``, ``content_block_start``, ``ping``, ``content_block_delta`` with
``text_delta``/``input_json_delta``, ``content_block_stop``, ``message_delta``, ``message_stop``),
each sent as ``event: NAME`` + ``data: {json}``, and ``{"type": "error", "error": {type, message}}``
error bodies with the status → type table of the API (``overloaded_error`` for 529).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .behavior import UsageMode
from .content import Reply, json_fragments

#: The oldest ``anthropic-version``; the API dates its versions (``2023-06-01``, newer SDKs send later dates).
OLDEST_VERSION = "2023-01-01"
_VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def valid_version(value: str) -> bool:
    """Whether ``anthropic-version`` is a version date the demo accepts (any date from 2023-01-01)."""
    return bool(_VERSION_RE.fullmatch(value)) and value >= OLDEST_VERSION


STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"}

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_DEFAULT_MESSAGES: dict[int, str] = {
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "This request would exceed the rate limit for your organization of 50 requests per minute. "
    "Please try again later.",
    500: "Internal server error",
    504: "Request timed out",
    529: "Overloaded",
}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def sse(event: str, obj: Any) -> bytes:
    """One SSE event: ``event: NAME``, ``data: {json}``, blank line."""
    return b"event: " + event.encode() + b"\ndata: " + dumps(obj) + b"\n\n"


def error_type(status: int) -> str:
    """The ``error.type`` Anthropic uses with ``status``."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error(status: int, message: str, request_id: str) -> dict[str, Any]:
    """An Anthropic error body."""
    return {"type": "error", "error": {"type": error_type(status), "message": message}, "request_id": request_id}


def status_error(status: int, model: str | None, request_id: str, message: str | None = None) -> dict[str, Any]:
    """The error body Anthropic sends with ``status`` (an injected failure)."""
    if message is None:
        if status == 404 and model:
            message = f"model: {model}"
        else:
            message = _DEFAULT_MESSAGES.get(status, f"demo upstream: injected error (HTTP {status})")
    return error(status, message, request_id)


def stream_error(message: str | None = None) -> dict[str, Any]:
    """The ``error`` event Anthropic sends mid-stream (typically ``overloaded_error``)."""
    return {"type": "error", "error": {"type": "overloaded_error", "message": message or "Overloaded"}}


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


def usage(input_tokens: int, output_tokens: int, mode: UsageMode) -> dict[str, Any]:
    if mode == "zero":
        input_tokens = output_tokens = 0
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _content(reply: Reply, tool_id: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.words:
        blocks.append({"type": "text", "text": reply.text})
    if reply.tool is not None:
        blocks.append(
            {"type": "tool_use", "id": tool_id, "name": reply.tool.name, "input": json.loads(reply.tool.arguments)}
        )
    return blocks


def message(reply: Reply, *, rid: str, model: str, usage_mode: UsageMode) -> dict[str, Any]:
    """A non-stream ``message`` object."""
    body: dict[str, Any] = {
        "id": f"msg_{rid}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(reply, f"toolu_{rid}"),
        "stop_reason": STOP_REASONS[reply.stop],
        "stop_sequence": None,
    }
    if usage_mode != "omit":
        body["usage"] = usage(reply.input_tokens, reply.output_tokens, usage_mode)
    return body


def message_events(reply: Reply, *, rid: str, model: str, usage_mode: UsageMode) -> list[tuple[str, dict[str, Any]]]:
    """The stream's ``(event name, data)`` pairs, in order."""
    start: dict[str, Any] = {
        "id": f"msg_{rid}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage_mode != "omit":
        start["usage"] = usage(reply.input_tokens, min(1, reply.output_tokens), usage_mode)
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    index = 0
    if reply.words:
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        events.append(("ping", {"type": "ping"}))
        events.extend(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
            )
            for p in reply.pieces
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    if reply.tool is not None:
        block = {"type": "tool_use", "id": f"toolu_{rid}", "name": reply.tool.name, "input": {}}
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events.extend(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": f},
                },
            )
            for f in ["", *json_fragments(reply.tool.arguments)]
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": STOP_REASONS[reply.stop], "stop_sequence": None},
    }
    if usage_mode != "omit":
        final = usage(reply.input_tokens, reply.output_tokens, usage_mode)
        del final["service_tier"]
        delta["usage"] = final
    events.append(("message_delta", delta))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def count_tokens(input_tokens: int) -> dict[str, Any]:
    """``POST /v1/messages/count_tokens``."""
    return {"input_tokens": input_tokens}


def models(names: list[str]) -> dict[str, Any]:
    """``GET /v1/models`` in Anthropic's shape."""
    return {
        "data": [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"} for n in names],
        "has_more": False,
        "first_id": names[0] if names else None,
        "last_id": names[-1] if names else None,
    }
