"""Upstream errors -> client errors: one status policy for every translator, two body shapes.

Status policy (:func:`client_status`), for what an upstream answered (or put in an error event):

==========================  ==============================  ===============================
upstream status             OpenAI client                   Anthropic client
==========================  ==============================  ===============================
400, 401, 403, 404, 409,    same status                     same status
413, 422, other 4xx
408 (request timeout)       504 ``upstream_timeout``        504 ``timeout_error``
429                         429 ``rate_limit_exceeded``     429 ``rate_limit_error``
503, 529 (overloaded)       503 ``upstream_overloaded``     529 ``overloaded_error``
504                         504 ``upstream_timeout``        504 ``timeout_error``
500, 502, other 5xx, odd    502 ``upstream_error``          502 ``api_error``
==========================  ==============================  ===============================

4xx bodies already in the client's shape pass through unchanged (their message is the provider's,
meant for the caller); everything else is rebuilt in the client's shape with the upstream's message.
An upstream 401/403 on a channel that uses the OPERATOR's key is not the client's fault: the gateway
should treat it as a channel failure rather than forward it (translators cannot tell BYOK apart).

Failover (gateway policy, offered here as :func:`is_failover_status`): retry the next candidate on
408, 429 and any 5xx (529 included) seen before the first byte went to the client.
"""

from __future__ import annotations

from typing import Any

#: Anthropic error ``type`` -> the HTTP status Anthropic uses for it (also for in-stream error events).
ANTHROPIC_STATUS_BY_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

#: Client status (after :func:`client_status`) -> Anthropic error ``type``.
ANTHROPIC_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

#: Client status (after :func:`client_status`) -> OpenAI error ``type`` (and ``code`` where OpenAI sets one).
OPENAI_TYPE_BY_STATUS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_error", None),
    404: ("not_found_error", None),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    502: ("upstream_error", "upstream_error"),
    503: ("upstream_overloaded", "upstream_overloaded"),
    504: ("upstream_timeout", "upstream_timeout"),
}

_MAX_MESSAGE = 500


def is_failover_status(status: int) -> bool:
    """True for upstream statuses worth trying another channel for: 408, 429 and 5xx (529 included)."""
    return status in (408, 429) or status >= 500


def client_status(upstream_status: int, client_format: str) -> int:
    """The status the client gets for an upstream error status (see the module table)."""
    if upstream_status == 429:
        return 429
    if upstream_status in (408, 504):
        return 504
    if upstream_status in (503, 529):
        return 529 if client_format == "anthropic" else 503
    if 400 <= upstream_status < 500:
        return upstream_status
    return 502


def openai_error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def anthropic_error_body(type_: str, message: str) -> dict[str, Any]:
    """Anthropic's error body: ``{"type": "error", "error": {"type", "message"}}``."""
    return {"type": "error", "error": {"type": type_, "message": message}}


def upstream_message(status: int, body: dict[str, Any] | None, text: str = "") -> str:
    """The most useful human message in an upstream error of any common shape.

    Understands OpenAI/Anthropic ``{"error": {"message"}}``, vLLM's older ``{"object": "error",
    "message"}``, ``{"error": "text"}``, FastAPI's ``{"detail": ...}`` and plain text; HTML error pages
    are not echoed.
    """
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]:
            return _clip(err["message"])
        if isinstance(err, str) and err:
            return _clip(err)
        for key in ("message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return _clip(value)
            if value is not None and key == "detail":
                return _clip(str(value))
    stripped = " ".join(text.split())
    if stripped and not stripped.startswith("<"):
        return _clip(stripped)
    return f"the upstream answered HTTP {status} without an error message"


def upstream_error_type(body: dict[str, Any] | None) -> str | None:
    """The provider's error ``type`` string, when the body has one."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return str(err["type"])
        if body.get("object") == "error" and isinstance(body.get("type"), str):
            return str(body["type"])
    return None


def _clip(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


def _server_message(status: int, message: str) -> str:
    return f"upstream error (HTTP {status}): {message}"


def is_openai_error_body(body: dict[str, Any] | None) -> bool:
    """True for ``{"error": {"message": str, ...}}``."""
    if not isinstance(body, dict):
        return False
    err = body.get("error")
    return isinstance(err, dict) and isinstance(err.get("message"), str)


def is_anthropic_error_body(body: dict[str, Any] | None) -> bool:
    """True for ``{"type": "error", "error": {"type": str, "message": str}}``."""
    if not isinstance(body, dict) or body.get("type") != "error":
        return False
    err = body.get("error")
    return isinstance(err, dict) and isinstance(err.get("type"), str) and isinstance(err.get("message"), str)


def to_openai_error(status: int, body: dict[str, Any] | None, text: str = "") -> tuple[int, dict[str, Any]]:
    """Any upstream error -> (client status, OpenAI error body)."""
    out = client_status(status, "openai")
    if body is not None and out == status < 500 and is_openai_error_body(body) and not is_anthropic_error_body(body):
        return status, body
    message = upstream_message(status, body, text)
    type_, code = OPENAI_TYPE_BY_STATUS.get(out, ("invalid_request_error", None))
    param: str | None = None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("param"), str):
        param = err["param"]
    if out >= 500:
        message = _server_message(status, message)
    return out, openai_error_body(message, type_, param, code)


def to_anthropic_error(status: int, body: dict[str, Any] | None, text: str = "") -> tuple[int, dict[str, Any]]:
    """Any upstream error -> (client status, Anthropic error body)."""
    out = client_status(status, "anthropic")
    if body is not None and out == status and (status < 500 or status == 529) and is_anthropic_error_body(body):
        return status, body
    message = upstream_message(status, body, text)
    type_ = ANTHROPIC_TYPE_BY_STATUS.get(out, "invalid_request_error" if out < 500 else "api_error")
    if out >= 500:
        message = _server_message(status, message)
    return out, anthropic_error_body(type_, message)
