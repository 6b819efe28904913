"""BYOK (bring your own key): a customer's provider key sent with one request.

Headers (documented in docs/gateway.md):

* ``X-Provider-Key: <the customer's provider API key>``
* ``X-Provider: openai | anthropic | google`` — optional when the matched channels allow exactly
  one provider.

The caller still authenticates with their gateway key (``Authorization: Bearer`` / ``x-api-key``).
The provider key lives only in the local variables of the request that carried it: it is put into
that request's upstream headers and nowhere else (not in the request context hooks see, logs,
spans, metrics, errors or any store).
"""

from __future__ import annotations

import re

from multidict import CIMultiDictProxy

from .errors import GatewayError, bad_request, forbidden

KEY_HEADER = "X-Provider-Key"
PROVIDER_HEADER = "X-Provider"
PROVIDERS = ("openai", "anthropic", "google")


class ByokRequest:
    """The BYOK part of one request. ``repr`` never shows the key."""

    __slots__ = ("key", "provider")

    def __init__(self, provider: str | None, key: str) -> None:
        self.provider = provider
        self.key = key

    def __repr__(self) -> str:
        return f"ByokRequest(provider={self.provider!r})"

    __str__ = __repr__

    def auth_headers(self, fmt: str) -> dict[str, str]:
        if fmt == "anthropic":
            return {"x-api-key": self.key}
        return {"Authorization": f"Bearer {self.key}"}


def parse_byok(headers: CIMultiDictProxy[str], scope: str) -> ByokRequest | None:
    """The BYOK request in ``headers``, or None. Raises 403 when BYOK is off, 400 on a bad provider."""
    key = headers.get(KEY_HEADER)
    if key is None:
        return None
    if scope == "never":
        raise forbidden(
            "Bring-your-own-key requests are disabled on this gateway (byok.scope is never); "
            f"remove the {KEY_HEADER} header.",
            code="byok_disabled",
        )
    key = key.strip()
    if not key:
        raise bad_request(f"The {KEY_HEADER} header is empty.", param=KEY_HEADER)
    provider = headers.get(PROVIDER_HEADER)
    if provider is not None:
        provider = provider.strip().lower()
        if provider not in PROVIDERS:
            raise bad_request(
                f"Unknown provider in {PROVIDER_HEADER}; use one of {', '.join(PROVIDERS)}.", param=PROVIDER_HEADER
            )
    return ByokRequest(provider, key)


_MASKED = re.compile(r"[^\s\"'`]*\*{3,}[^\s\"'`.,;]*")


def scrub(text: str, key: str) -> str:
    """Remove the key, recognisable fragments of it and masked renderings (``sk-****abcd``, as providers
    echo a wrong key) from an upstream error text."""
    if not key:
        return text
    text = text.replace(key, "[redacted]")
    if len(key) >= 12:
        for fragment in (key[:8], key[-6:]):
            text = text.replace(fragment, "[redacted]")
    return _MASKED.sub("[redacted]", text)


def provider_missing() -> GatewayError:
    return bad_request(
        f"The {PROVIDER_HEADER} header is required: the channels serving this model accept more than one "
        "provider (openai, anthropic, google).",
        param=PROVIDER_HEADER,
    )
