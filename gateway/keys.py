"""Customer key resolution: the one step on the request path that turns an API key into who is calling.

:class:`KeyResolver` is the seam. Standalone mode uses :class:`StaticKeyResolver` (a key file);
the metering store (issue 5) provides the production implementation with the same interface.

Key file (``--keys FILE``, JSON or YAML): a list of entries, or ``{"keys": [...]}``::

    - key: sk-demo-1            # the key itself, or
      sha256: 9f86d0...         # its SHA-256 hex digest (preferred: the file then holds no secret)
      id: key-1                 # key id (logs, metrics, audit); default: "key-<first 8 hex of sha256>"
      customer: cust-1          # customer id
      tier: pro                 # a tier of the routing table's policy.tiers ("" = no tier)
      allowedModels: [gpt-4o]   # further restricts the tier; empty/absent = the tier's
      rpm: 60                   # optional limits, enforced by the metering layer
      tpm: 100000
      suspended: false
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Who is calling: the result of key resolution. Never holds the key itself."""

    key_id: str
    customer_id: str
    tier: str = ""
    allowed_models: frozenset[str] = field(default_factory=frozenset)
    rpm: int | None = None
    tpm: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


class KeyResolver(Protocol):
    """Resolves a presented API key; ``None`` means unknown, revoked or suspended (the gateway answers 401)."""

    async def resolve(self, api_key: str) -> KeyInfo | None: ...


def key_digest(api_key: str) -> str:
    """SHA-256 hex digest of a key, the only form in which keys are stored or compared."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class InvalidKeyFile(ValueError):
    """The key file is unusable; the message names the entry and field (never a key)."""


class StaticKeyResolver:
    """Keys from a static list (standalone mode only): looked up by SHA-256 digest."""

    def __init__(self, entries: dict[str, KeyInfo]) -> None:
        self._by_digest = entries

    async def resolve(self, api_key: str) -> KeyInfo | None:
        return self._by_digest.get(key_digest(api_key))

    def __len__(self) -> int:
        return len(self._by_digest)


def parse_key_file(data: bytes | str) -> StaticKeyResolver:
    """Parse a key file (JSON or YAML; see the module docstring)."""
    try:
        doc = yaml.safe_load(data) if not _looks_json(data) else json.loads(data)
    except (ValueError, yaml.YAMLError) as err:
        raise InvalidKeyFile(f"key file: not valid JSON/YAML ({type(err).__name__})") from None
    if isinstance(doc, dict):
        doc = doc.get("keys")
    if not isinstance(doc, list):
        raise InvalidKeyFile("key file: expected a list of key entries (or {\"keys\": [...]})")
    out: dict[str, KeyInfo] = {}
    for i, entry in enumerate(doc):
        at = f"key file entry [{i}]"
        if not isinstance(entry, dict):
            raise InvalidKeyFile(f"{at}: must be a mapping")
        if entry.get("suspended"):
            continue
        if isinstance(entry.get("key"), str) and entry["key"]:
            digest = key_digest(entry["key"])
        elif isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64:
            digest = entry["sha256"].lower()
        else:
            raise InvalidKeyFile(f"{at}: needs 'key' (the key) or 'sha256' (its 64-hex SHA-256 digest)")
        models = entry.get("allowedModels") or []
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise InvalidKeyFile(f"{at}.allowedModels: must be a list of model names")
        for limit in ("rpm", "tpm"):
            if entry.get(limit) is not None and (not isinstance(entry[limit], int) or entry[limit] < 1):
                raise InvalidKeyFile(f"{at}.{limit}: must be a positive integer")
        key_id = str(entry.get("id") or f"key-{digest[:8]}")
        out[digest] = KeyInfo(
            key_id=key_id,
            customer_id=str(entry.get("customer") or key_id),
            tier=str(entry.get("tier") or ""),
            allowed_models=frozenset(models),
            rpm=entry.get("rpm"),
            tpm=entry.get("tpm"),
        )
    return StaticKeyResolver(out)


def _looks_json(data: bytes | str) -> bool:
    head = data.lstrip()[:1]
    return head in (b"[", b"{", "[", "{")
