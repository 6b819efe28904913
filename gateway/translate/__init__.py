"""Provider translation: one module per (client format, upstream format) pair.

================  ==============  ===============================================================
client format     upstream        module
================  ==============  ===============================================================
openai            openai          :mod:`.openai_openai` (pass-through, usage injected/stripped)
openai            anthropic       :mod:`.openai_anthropic`
anthropic         openai          :mod:`.anthropic_openai`
anthropic         anthropic       :mod:`.anthropic_anthropic` (pass-through)
================  ==============  ===============================================================

:func:`get_translator` returns a shared instance with default settings (translators hold no
per-request state; streams get their own :class:`~.base.StreamTranslator`). Build the classes directly
for other settings (e.g. ``OpenAIToAnthropic(default_max_tokens=8192)``).
"""

from __future__ import annotations

from newapi_gateway.translate.anthropic_anthropic import AnthropicToAnthropic
from newapi_gateway.translate.anthropic_openai import AnthropicToOpenAI
from newapi_gateway.translate.base import (
    ClientFormat,
    ClientResponse,
    Operation,
    RawClientResponse,
    StreamTranslator,
    TranslationError,
    Translator,
    UnsupportedOperation,
    UpstreamFormat,
    UpstreamRequest,
    UpstreamResponseError,
    Usage,
    join_url,
)
from newapi_gateway.translate.openai_anthropic import OpenAIToAnthropic
from newapi_gateway.translate.openai_openai import OpenAIToOpenAI

__all__ = [
    "AnthropicToAnthropic",
    "AnthropicToOpenAI",
    "ClientFormat",
    "ClientResponse",
    "OpenAIToAnthropic",
    "OpenAIToOpenAI",
    "Operation",
    "RawClientResponse",
    "StreamTranslator",
    "TranslationError",
    "Translator",
    "UnsupportedOperation",
    "UpstreamFormat",
    "UpstreamRequest",
    "UpstreamResponseError",
    "Usage",
    "get_translator",
    "join_url",
]

_TRANSLATORS: dict[tuple[str, str], Translator] = {
    ("openai", "openai"): OpenAIToOpenAI(),
    ("openai", "anthropic"): OpenAIToAnthropic(),
    ("anthropic", "openai"): AnthropicToOpenAI(),
    ("anthropic", "anthropic"): AnthropicToAnthropic(),
}


def get_translator(client_format: ClientFormat, upstream_format: UpstreamFormat) -> Translator:
    """The translator for clients speaking ``client_format`` to an upstream speaking ``upstream_format``.

    Raises ``ValueError`` for an unknown format (a programming error: formats come from the routing table).
    """
    try:
        return _TRANSLATORS[(client_format, upstream_format)]
    except KeyError:
        raise ValueError(
            f"no translator for client format {client_format!r} and upstream format {upstream_format!r}; "
            "formats are 'openai' and 'anthropic'"
        ) from None
