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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

ClientFormat = Literal["openai", "anthropic"]
UpstreamFormat = Literal["openai", "anthropic"]
Operation = Literal["chat", "completions", "embeddings", "messages"]


class UnsupportedOperation(Exception):
    """The (client, upstream) pair cannot serve this operation; message is client-presentable."""


class TranslationError(Exception):
    """The client request cannot be translated (e.g. a content part the upstream cannot take).

    ``param`` names the offending request field when known. Client-presentable (400).
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class Usage:
    """Token usage of one request. ``reported`` is False when the upstream gave no usage."""

    input_tokens: int = 0
    output_tokens: int = 0
    reported: bool = False

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


class StreamTranslator(ABC):
    """Translates one upstream SSE stream into the client's SSE stream, chunk by chunk.

    ``feed`` takes raw upstream bytes exactly as read from the socket (events may be split across
    or packed into chunks) and returns the client bytes that are ready (possibly ``b""``).
    ``finish`` is called once when the upstream closes and returns the final bytes (e.g. OpenAI's
    ``data: [DONE]``). ``usage`` holds the usage known so far (updated as events arrive).
    """

    usage: Usage

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

    @abstractmethod
    def error(self, status: int, body: dict[str, Any] | None, text: str = "") -> tuple[int, dict[str, Any]]:
        """An upstream error (status, parsed JSON or None plus raw text) -> client status and error body."""

    @abstractmethod
    def stream(self, operation: Operation, request_body: dict[str, Any]) -> StreamTranslator:
        """A new stream translator for one streaming response to ``request_body``."""
