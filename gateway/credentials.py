"""Upstream credentials: credential name -> API key, kept apart from the routing table.

Sources: the Kubernetes Secret ``<instance>-upstream`` (each data key is a credential name) or,
standalone, ``--upstream-credentials FILE``: a JSON object ``{"<credential name>": "<api key>"}``.
The mapping's ``repr`` never shows a key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping


class InvalidCredentials(ValueError):
    """The credentials document is unusable; the message never contains a key."""


class Credentials(Mapping[str, str]):
    """An immutable credential name -> key mapping whose repr shows names only."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._data: dict[str, str] = dict(data or {})

    def __getitem__(self, name: str) -> str:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Credentials(names={sorted(self._data)})"

    __str__ = __repr__


def parse_credentials_file(data: bytes | str) -> Credentials:
    """Parse a standalone credentials file (a JSON object of strings)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InvalidCredentials("upstream credentials: not valid JSON; expected {\"<name>\": \"<key>\"}") from None
    if not isinstance(doc, dict):
        raise InvalidCredentials("upstream credentials: must be a JSON object {\"<name>\": \"<key>\"}")
    bad = sorted(str(k) for k, v in doc.items() if not isinstance(v, str) or not v)
    if bad:
        raise InvalidCredentials(f"upstream credentials: the values of {bad} must be non-empty strings")
    return Credentials(doc)


def credentials_from_secret_data(data: Mapping[str, str] | None) -> Credentials:
    """Decode a Secret's ``data`` (base64 values) into credentials; strips one trailing newline."""
    out: dict[str, str] = {}
    for name, value in (data or {}).items():
        try:
            key = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidCredentials(
                f"upstream Secret: data key {name!r} is not base64-encoded UTF-8"
            ) from None
        out[name] = key.removesuffix("\n")
    return Credentials(out)
