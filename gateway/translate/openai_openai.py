"""OpenAI client -> OpenAI-compatible upstream (OpenAI, vLLM, ...): pass-through with the model renamed.

Requests: the body is copied with ``model`` replaced; streams get ``stream_options.include_usage:
true`` so the upstream always reports usage (the client's other ``stream_options`` are kept).

Streams: the hot path. Bytes are cut at SSE event boundaries with bytes operations and forwarded
byte for byte; only events that may hold a usage object (``"usage": {``) or an error are parsed. When
the client did not ask for ``include_usage``, the extra usage-only chunk (``choices`` empty) is dropped
from the client stream after its usage was recorded. An upstream's usage is authoritative even when
all counts are zero. Non-stream bodies pass through unchanged (``model`` stays the upstream's).

Errors: see :mod:`newapi_gateway.translate.errors` (OpenAI-shaped 4xx pass through; vLLM's older
``{"object": "error", ...}`` and non-JSON bodies are wrapped; 5xx become 502/503/504).
"""

from __future__ import annotations

import json
from typing import Any

from newapi_gateway.translate.base import (
    ClientResponse,
    Operation,
    RawClientResponse,
    StreamTranslator,
    Translator,
    UnsupportedOperation,
    UpstreamRequest,
    UpstreamResponseError,
    Usage,
)
from newapi_gateway.translate.errors import to_openai_error
from newapi_gateway.translate.sse import EventSplitter, parse_event, split_events
from newapi_gateway.translate.usage import find_usage_member, has_usage_object, openai_usage

#: Operation -> path relative to an OpenAI base URL (which ends with ``/v1``).
PATHS: dict[str, str] = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}

_ERROR_KEY = b'"error"'


def client_wants_usage(request_body: dict[str, Any]) -> bool:
    """Did the client ask for the usage chunk (``stream_options.include_usage: true``)?"""
    options = request_body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def upstream_stream_error(obj: Any) -> tuple[int, dict[str, Any]] | None:
    """An error inside an OpenAI-format stream chunk (``{"error": {...}}`` or vLLM's ``{"object":
    "error", ...}``) -> (client status, OpenAI error body); None for a normal chunk."""
    if not isinstance(obj, dict):
        return None
    err = obj.get("error")
    if isinstance(err, dict):
        code = err.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        return to_openai_error(status, obj)
    if obj.get("object") == "error":
        code = obj.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        return to_openai_error(status, obj)
    return None


class OpenAIPassthroughStream(StreamTranslator):
    """Forwards an OpenAI SSE stream, recording usage and dropping the usage-only chunk if unwanted."""

    __slots__ = ("_splitter", "_strip_usage_chunk", "upstream_error", "usage")

    def __init__(self, strip_usage_chunk: bool) -> None:
        self.usage = Usage()
        self.upstream_error: tuple[int, dict[str, Any]] | None = None
        self._strip_usage_chunk = strip_usage_chunk
        self._splitter = EventSplitter()

    def feed(self, data: bytes) -> bytes:
        ready = self._splitter.feed_ready(data)
        if not ready:
            return b""
        if not has_usage_object(ready) and _ERROR_KEY not in ready:
            return ready  # the common case: nothing to look at, forward untouched
        return self._inspect(ready)

    def finish(self) -> bytes:
        rest = self._splitter.rest()
        if not rest.strip():
            return rest
        # An event without its final blank line (sloppy upstream): inspect it like any other.
        return self._inspect_event(rest)

    def _inspect(self, ready: bytes) -> bytes:
        out = [self._inspect_event(event) for event in split_events(ready)]
        return b"".join(out)

    def _inspect_event(self, event: bytes) -> bytes:
        usage_candidate = has_usage_object(event)
        if not usage_candidate and _ERROR_KEY not in event:
            return event
        _, data = parse_event(event)
        if not data or data == b"[DONE]":
            return event
        try:
            obj = json.loads(data)
        except ValueError:
            return event
        if not isinstance(obj, dict):
            return event
        if usage_candidate:
            usage = openai_usage(obj.get("usage"))
            if usage is not None:
                self.usage = usage
                if self._strip_usage_chunk and not obj.get("choices"):
                    return b""
        error = upstream_stream_error(obj)
        if error is not None and self.upstream_error is None:
            self.upstream_error = error
        return event


class OpenAIToOpenAI(Translator):
    """OpenAI client format -> OpenAI-compatible upstream (chat, completions, embeddings)."""

    client_format = "openai"
    upstream_format = "openai"

    def request(self, operation: Operation, body: dict[str, Any], upstream_model: str) -> UpstreamRequest:
        path = PATHS.get(operation)
        if path is None:
            raise UnsupportedOperation(f"operation {operation!r} is not available on an OpenAI-format upstream")
        out = dict(body)
        out["model"] = upstream_model
        stream = operation != "embeddings" and out.get("stream") is True
        if stream:
            options = out.get("stream_options")
            out["stream_options"] = (
                {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
            )
        return UpstreamRequest(path=path, body=out, stream=stream)

    def response(self, operation: Operation, status: int, body: dict[str, Any]) -> ClientResponse:
        usage = openai_usage(body.get("usage")) or Usage()
        return ClientResponse(status=status, body=body, usage=usage)

    def response_bytes(self, operation: Operation, status: int, raw: bytes) -> RawClientResponse:
        if raw[:256].lstrip()[:1] != b"{":
            raise UpstreamResponseError(f"upstream sent a {status} response that is not a JSON object")
        found, value = find_usage_member(raw)
        usage = (openai_usage(value) if found else None) or Usage()
        return RawClientResponse(status=status, body=raw, usage=usage)

    def error(self, status: int, body: dict[str, Any] | None, text: str = "") -> tuple[int, dict[str, Any]]:
        return to_openai_error(status, body, text)

    def stream(self, operation: Operation, request_body: dict[str, Any]) -> StreamTranslator:
        return OpenAIPassthroughStream(strip_usage_chunk=not client_wants_usage(request_body))
