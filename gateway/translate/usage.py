"""Reading token usage out of provider payloads (parsed dicts, or raw bytes without a full parse)."""

from __future__ import annotations

import json
from typing import Any

from newapi_gateway.translate.base import Usage

_DECODER = json.JSONDecoder()
_USAGE_KEY = b'"usage"'
_SPACE = frozenset(b" \t\r\n")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def openai_usage(obj: Any) -> Usage | None:
    """An OpenAI ``usage`` object -> :class:`Usage` (``reported``), or None when it is not an object.

    ``prompt_tokens`` includes cached tokens; ``prompt_tokens_details.cached_tokens`` is their share.
    Embeddings report only ``prompt_tokens`` (and ``total_tokens``).
    """
    if not isinstance(obj, dict):
        return None
    details = obj.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(
        input_tokens=_int(obj.get("prompt_tokens")),
        output_tokens=_int(obj.get("completion_tokens")),
        reported=True,
        cache_read_tokens=cached,
    )


class AnthropicUsage:
    """Anthropic usage as it accumulates over a stream (or from one body).

    ``message_start`` carries ``input_tokens``, ``cache_creation_input_tokens``,
    ``cache_read_input_tokens`` and ``output_tokens``; each ``message_delta`` carries CUMULATIVE totals
    that overwrite the fields it has. The prompt is the sum of the three input fields.
    """

    __slots__ = ("cache_read", "cache_write", "input", "output", "reported")

    def __init__(self) -> None:
        self.input = 0
        self.cache_write = 0
        self.cache_read = 0
        self.output = 0
        self.reported = False

    def apply(self, obj: Any) -> None:
        """Overwrite the counts present in an Anthropic ``usage`` object."""
        if not isinstance(obj, dict):
            return
        self.reported = True
        if "input_tokens" in obj and obj["input_tokens"] is not None:
            self.input = _int(obj["input_tokens"])
        if obj.get("cache_creation_input_tokens") is not None:
            self.cache_write = _int(obj["cache_creation_input_tokens"])
        if obj.get("cache_read_input_tokens") is not None:
            self.cache_read = _int(obj["cache_read_input_tokens"])
        if obj.get("output_tokens") is not None:
            self.output = _int(obj["output_tokens"])

    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input + self.cache_write + self.cache_read,
            output_tokens=self.output,
            reported=self.reported,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
        )


def anthropic_usage(obj: Any) -> Usage:
    """An Anthropic ``usage`` object (of a Message) -> :class:`Usage`."""
    acc = AnthropicUsage()
    acc.apply(obj)
    return acc.usage()


def has_usage_object(buf: bytes) -> bool:
    """True when ``buf`` may hold a ``"usage": {...}`` member (not just ``"usage": null``).

    A cheap byte scan used to skip parsing events that cannot carry usage. A JSON string containing the
    word usage has its quotes escaped, so only keys (or a bare string value "usage") match the scan.
    """
    i = buf.find(_USAGE_KEY)
    n = len(buf)
    while i >= 0:
        j = i + 7
        while j < n and (buf[j] in _SPACE or buf[j] == 0x3A):  # whitespace and the colon
            j += 1
        if j < n and buf[j] == 0x7B:  # "{"
            return True
        i = buf.find(_USAGE_KEY, j)
    return False


def find_usage_member(raw: bytes) -> tuple[bool, Any]:
    """The value of the LAST ``"usage":`` member in a JSON document, parsed without parsing the rest.

    Returns ``(found, value)``. Providers put the top-level usage after the content, and content
    strings cannot contain an unescaped ``"usage"``, so the last member is the top-level one.
    ``(False, None)`` when there is none or it does not parse.
    """
    i = raw.rfind(_USAGE_KEY)
    while i >= 0:
        j = i + 7
        n = len(raw)
        while j < n and raw[j] in _SPACE:
            j += 1
        if j < n and raw[j] == 0x3A:
            j += 1
            while j < n and raw[j] in _SPACE:
                j += 1
            try:
                value, _ = _DECODER.raw_decode(raw[j:].decode("utf-8", "replace"))
            except ValueError:
                return False, None
            return True, value
        i = raw.rfind(_USAGE_KEY, 0, i)
    return False, None
