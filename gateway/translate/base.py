"""The translator interface: one implementation per (client format, upstream format) pair.

Translators are pure: dicts/bytes in, dicts/bytes plus token usage out. No I/O, no clocks, no
globals. The gateway's HTTP layer does the networking and calls these.

Formats:
- ``openai``: OpenAI's HTTP API (``/chat/completions``, ``/completions``, ``/embeddings``), also spoken
  by vLLM and every openai-compatible upstream.
- ``anthropic``: Anthropic's Messages API (``/v1/messages``).

Operations (what the client called):
- ``chat`` (``POST /v1/chat/completions``), ``completions`` (``POST /v1/completions``),
  ``embeddings`` (``POST /v1/embeddings``) for OpenAI-format clients;
- ``messages`` (``POST /v1/messages``) for Anthropic-format clients.

A translator that cannot serve an operation raises :class:`UnsupportedOperation` from
``request`` (the gateway answers 400 in the client's error format and tries no other upstream).

Upstream URLs: ``UpstreamRequest.path`` is joined to the channel endpoint with :func:`join_url`, which
drops a duplicated ``/v1`` (an Anthropic endpoint written ``https://api.anthropic.com/v1`` and the path
``/v1/messages`` give ``https://api.anthropic.com/v1/messages``, as does ``https://api.anthropic.com``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

ClientFormat = Literal["openai", "anthropic"]
UpstreamFormat = Literal["openai", "anthropic"]
Operation = Literal["chat", "completions", "embeddings", "messages"]


def join_url(endpoint: str, path: str) -> str:
    """The upstream URL for ``path`` (from :class:`UpstreamRequest`) on a channel ``endpoint`` (base URL).

    Trailing slashes of the endpoint are ignored, and when the endpoint already ends with ``/v1`` and the
    path starts with ``/v1/``, the path's ``/v1`` is dropped: ``https://api.anthropic.com`` and
    ``https://api.anthropic.com/v1`` both give ``.../v1/messages``. OpenAI-format paths carry no ``/v1``
    (the endpoint has it, e.g. ``http://vllm:8000/v1`` + ``/chat/completions``).
    """
    base = endpoint.rstrip("/")
    if path.startswith("/v1/") and base.endswith("/v1"):
        path = path[3:]
    return base + path


class UnsupportedOperation(Exception):
    """The (client, upstream) pair cannot serve this operation; message is client-presentable."""


class TranslationError(Exception):
    """The client request cannot be translated (e.g. a content part the upstream cannot take).

    ``param`` names the offending request field when known. Client-presentable (400).
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class UpstreamResponseError(Exception):
    """A successful (2xx) upstream response that cannot be understood (not JSON, wrong shape).

    A fault of the upstream, not of the client: the gateway answers 502 and may count a channel failure.
    """


@dataclass
class Usage:
    """Token usage of one request. ``reported`` is False when the upstream gave no usage.

    ``input_tokens`` is the whole prompt, cached parts included; ``cache_read_tokens`` (prompt tokens
    served from the provider's prompt cache: OpenAI ``prompt_tokens_details.cached_tokens``, Anthropic
    ``cache_read_input_tokens``) and ``cache_write_tokens`` (Anthropic ``cache_creation_input_tokens``)
    are the parts of ``input_tokens`` a price list may treat differently.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    reported: bool = False
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class UpstreamRequest:
    """What to send upstream. ``path`` is appended to the channel's endpoint base URL
    (e.g. ``/chat/completions`` for an openai base ``http://host/v1``; ``/v1/messages`` for an
    anthropic base ``https://api.anthropic.com``). ``headers`` are extra headers the format needs
    (e.g. ``anthropic-version``); authentication headers are added by the gateway, not here."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False


@dataclass
class ClientResponse:
    """A complete (non-stream) response for the client, in the client's format."""

    status: int
    body: dict[str, Any]
    usage: Usage


@dataclass
class RawClientResponse:
    """A complete (non-stream) response for the client as encoded JSON bytes (see ``response_bytes``)."""

    status: int
    body: bytes
    usage: Usage


class StreamTranslator(ABC):
    """Translates one upstream SSE stream into the client's SSE stream, chunk by chunk.

    ``feed`` takes raw upstream bytes exactly as read from the socket (events may be split across
    or packed into chunks) and returns the client bytes that are ready (possibly ``b""``).
    ``finish`` is called once when the upstream closes and returns the final bytes (e.g. OpenAI's
    ``data: [DONE]``). ``usage`` holds the usage known so far (updated as events arrive).

    ``upstream_error`` is set when the upstream stream carried an error (an Anthropic ``error`` event, an
    OpenAI/vLLM ``{"error": ...}`` chunk, or a stream that ended before its end marker): the client status
    and client-format body it maps to, as ``Translator.error`` would return them. The translator has also
    written that error into its output in the client's stream format. If the gateway has written nothing
    to the client yet, it may discard the output and fail over (see ``errors.is_failover_status``) or
    answer with this status and body as a plain JSON error. Translators that re-frame the stream (not the
    pass-through ones) hold back their first bytes until the upstream's first content, so an error event
    right after the upstream's preamble still finds the client stream untouched.
    """

    usage: Usage
    upstream_error: tuple[int, dict[str, Any]] | None = None

    @abstractmethod
    def feed(self, data: bytes) -> bytes: ...

    @abstractmethod
    def finish(self) -> bytes: ...


class Translator(ABC):
    """One (client format, upstream format) pair."""

    client_format: ClientFormat
    upstream_format: UpstreamFormat

    @abstractmethod
    def request(self, operation: Operation, body: dict[str, Any], upstream_model: str) -> UpstreamRequest:
        """Client request body -> upstream request, with the model renamed to ``upstream_model``.

        For streams, the upstream request must ask for usage (OpenAI: ``stream_options.include_usage``).
        """

    @abstractmethod
    def response(self, operation: Operation, status: int, body: dict[str, Any]) -> ClientResponse:
        """A successful (2xx) upstream JSON body -> the client's body and usage."""

    def response_bytes(self, operation: Operation, status: int, raw: bytes) -> RawClientResponse:
        """Like ``response`` but from and to encoded JSON: the gateway's fast path for non-stream bodies.

        Pass-through translators return ``raw`` itself (no decode, no re-encode) and read the usage
        cheaply. Raises :class:`UpstreamResponseError` when ``raw`` is not a JSON object.
        """
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise UpstreamResponseError(f"upstream sent a non-JSON {status} response: {exc}") from None
        if not isinstance(body, dict):
            raise UpstreamResponseError(f"upstream sent a {status} response that is not a JSON object")
        client = self.response(operation, status, body)
        encoded = json.dumps(client.body, ensure_ascii=False, separators=(",", ":")).encode()
        return RawClientResponse(client.status, encoded, client.usage)

    @abstractmethod
    def error(self, status: int, body: dict[str, Any] | None, text: str = "") -> tuple[int, dict[str, Any]]:
        """An upstream error (status, parsed JSON or None plus raw text) -> client status and error body.

        Statuses follow one policy for every pair (``errors.client_status``): upstream 4xx keep their
        status (408 becomes 504), 429 stays 429, 503/529 (overloaded) become 503 for OpenAI clients and 529
        for Anthropic clients, 504 stays 504, any other 5xx (or non-2xx oddity) becomes 502.
        """

    @abstractmethod
    def stream(self, operation: Operation, request_body: dict[str, Any]) -> StreamTranslator:
        """A new stream translator for one streaming response to ``request_body``.

        ``request_body`` is the CLIENT's request body (the one given to ``request``, which never mutates
        it): the translator reads what the client asked for, e.g. ``stream_options.include_usage``.
        """
