"""Prompt and completion text for the audit log (pure; never raises on odd shapes).

Only used when ``audit.logPromptContent`` is true, and never for BYOK requests (see
:mod:`.audit`):

* the prompt is the request's text as the AUP check reads it (:func:`.extract.request_text`), and
  for embeddings the string ``input`` values;
* the completion is the text of the answer as the client received it: OpenAI chat ``message.content``
  and tool-call arguments, completions ``text``, Anthropic ``text`` blocks and ``tool_use`` inputs; for
  streams the same read from the SSE events the client received (OpenAI ``delta.content`` and
  tool-call argument deltas, Anthropic ``text_delta`` / ``input_json_delta``).

Both are cut to :data:`MAX_CHARS` characters with a marker saying how much was cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .. import jsonutil
from .extract import request_text

#: Longest prompt or completion kept in an audit row (characters).
MAX_CHARS = 65536


def clip(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a marker naming how many were cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters not kept in the audit log]"


def prompt_text(operation: str, body: Mapping[str, Any]) -> str:
    """The text a request sent (what the AUP check reads; embeddings: the string inputs)."""
    if operation == "embeddings":
        value = body.get("input")
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return "\n".join(v for v in value if isinstance(v, str) and v)
        return ""
    return request_text(operation, body)


def completion_text(body: bytes | None) -> str:
    """The text of a non-stream answer body as sent to the client (OpenAI or Anthropic shape)."""
    if not body:
        return ""
    try:
        doc = jsonutil.loads(body)
    except jsonutil.DecodeError:
        return ""
    if not isinstance(doc, dict):
        return ""
    parts: list[str] = []
    for choice in _dicts(doc.get("choices")):
        message = choice.get("message")
        if isinstance(message, dict):
            _add(parts, message.get("content"))
            for call in _dicts(message.get("tool_calls")):
                function = call.get("function")
                if isinstance(function, dict):
                    _add(parts, function.get("arguments"))
        _add(parts, choice.get("text"))
    for block in _dicts(doc.get("content")):
        if block.get("type") == "text":
            _add(parts, block.get("text"))
        elif block.get("type") == "tool_use":
            parts.append(jsonutil.dumps(block.get("input") or {}).decode())
    return "".join(parts)


def stream_completion_text(chunks: Iterable[bytes]) -> str:
    """The text of an SSE answer from the bytes written to the client (events may span chunks)."""
    parts: list[str] = []
    data = b"".join(chunks)
    for line in data.split(b"\n"):
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]":
            continue
        try:
            event = jsonutil.loads(payload)
        except jsonutil.DecodeError:
            continue
        if isinstance(event, dict):
            _event_text(event, parts)
    return "".join(parts)


def _event_text(event: dict[str, Any], parts: list[str]) -> None:
    for choice in _dicts(event.get("choices")):
        delta = choice.get("delta")
        if isinstance(delta, dict):
            _add(parts, delta.get("content"))
            for call in _dicts(delta.get("tool_calls")):
                function = call.get("function")
                if isinstance(function, dict):
                    _add(parts, function.get("arguments"))
        _add(parts, choice.get("text"))
    if event.get("type") == "content_block_delta":
        delta = event.get("delta")
        if isinstance(delta, dict):
            _add(parts, delta.get("text"))
            _add(parts, delta.get("partial_json"))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _add(parts: list[str], value: Any) -> None:
    if isinstance(value, str) and value:
        parts.append(value)
