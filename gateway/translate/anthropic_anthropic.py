"""Anthropic client (``/v1/messages``) -> Anthropic upstream: pass-through with the model renamed.

The request goes to ``/v1/messages`` (see :func:`~newapi_gateway.translate.base.join_url` for how the
channel endpoint is joined) with ``anthropic-version: 2023-06-01``; the gateway should forward the
client's own ``anthropic-version`` and ``anthropic-beta`` headers when present (they override this
default). Streams are forwarded byte for byte; only ``message_start``/``message_delta`` events (the
ones holding ``"usage": {``) and ``error`` events are parsed. Usage = ``input_tokens +
cache_creation_input_tokens + cache_read_input_tokens`` in, ``output_tokens`` out (cumulative in
``message_delta``). Non-stream bodies pass through unchanged.
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
from newapi_gateway.translate.errors import ANTHROPIC_STATUS_BY_TYPE, to_anthropic_error
from newapi_gateway.translate.sse import EventSplitter, parse_event, split_events
from newapi_gateway.translate.usage import AnthropicUsage, anthropic_usage, find_usage_member, has_usage_object

MESSAGES_PATH = "/v1/messages"
ANTHROPIC_VERSION = "2023-06-01"

_ERROR_KEY = b'"error"'


def anthropic_stream_error(obj: Any) -> tuple[int, dict[str, Any]] | None:
    """An Anthropic ``error`` event's data -> (client status, Anthropic error body); None otherwise."""
    if not isinstance(obj, dict) or obj.get("type") != "error":
        return None
    err = obj.get("error")
    etype = err.get("type") if isinstance(err, dict) else None
    status = ANTHROPIC_STATUS_BY_TYPE.get(etype, 500) if isinstance(etype, str) else 500
    return to_anthropic_error(status, obj)


class AnthropicPassthroughStream(StreamTranslator):
    """Forwards an Anthropic event stream untouched while reading usage and errors out of it."""

    def __init__(self) -> None:
        self.usage = Usage()
        self.upstream_error: tuple[int, dict[str, Any]] | None = None
        self._acc = AnthropicUsage()
        self._splitter = EventSplitter()

    def feed(self, data: bytes) -> bytes:
        ready = self._splitter.feed_ready(data)
        if ready and (has_usage_object(ready) or _ERROR_KEY in ready):
            for event in split_events(ready):
                self._inspect(event)
        return ready

    def finish(self) -> bytes:
        rest = self._splitter.rest()
        if rest.strip():
            self._inspect(rest)
        return rest

    def _inspect(self, event: bytes) -> None:
        usage_candidate = has_usage_object(event)
        if not usage_candidate and _ERROR_KEY not in event:
            return
        _, data = parse_event(event)
        if not data:
            return
        try:
            obj = json.loads(data)
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                self._acc.apply(message.get("usage"))
        elif kind == "message_delta":
            self._acc.apply(obj.get("usage"))
        elif kind == "error" and self.upstream_error is None:
            self.upstream_error = anthropic_stream_error(obj)
            return
        else:
            return
        self.usage = self._acc.usage()


class AnthropicToAnthropic(Translator):
    """Anthropic client format -> Anthropic upstream (``messages`` only)."""

    client_format = "anthropic"
    upstream_format = "anthropic"

    def request(self, operation: Operation, body: dict[str, Any], upstream_model: str) -> UpstreamRequest:
        if operation != "messages":
            raise UnsupportedOperation(f"operation {operation!r} is not available on an Anthropic upstream")
        out = dict(body)
        out["model"] = upstream_model
        return UpstreamRequest(
            path=MESSAGES_PATH,
            body=out,
            headers={"anthropic-version": ANTHROPIC_VERSION},
            stream=out.get("stream") is True,
        )

    def response(self, operation: Operation, status: int, body: dict[str, Any]) -> ClientResponse:
        usage = anthropic_usage(body["usage"]) if isinstance(body.get("usage"), dict) else Usage()
        return ClientResponse(status=status, body=body, usage=usage)

    def response_bytes(self, operation: Operation, status: int, raw: bytes) -> RawClientResponse:
        if raw[:256].lstrip()[:1] != b"{":
            raise UpstreamResponseError(f"upstream sent a {status} response that is not a JSON object")
        found, value = find_usage_member(raw)
        usage = anthropic_usage(value) if found and isinstance(value, dict) else Usage()
        return RawClientResponse(status=status, body=raw, usage=usage)

    def error(self, status: int, body: dict[str, Any] | None, text: str = "") -> tuple[int, dict[str, Any]]:
        return to_anthropic_error(status, body, text)

    def stream(self, operation: Operation, request_body: dict[str, Any]) -> StreamTranslator:
        return AnthropicPassthroughStream()
