"""Customer API keys: generation, hashing, display prefix. The store only ever sees the hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

#: Every key the gateway issues starts with this (OpenAI-style, so tools recognise it as a key).
KEY_PREFIX = "sk-"
#: Characters of the key kept for display (e.g. ``sk-Ab3dEf7h``): enough to tell keys apart, too
#: few to guess the rest (the random part has 256 bits).
DISPLAY_PREFIX_LEN = 11


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key. ``secret`` is shown to its owner once and never stored."""

    secret: str
    hash: bytes
    prefix: str


def hash_key(secret: str) -> bytes:
    """SHA-256 of the key as presented by the client (32 bytes)."""
    return hashlib.sha256(secret.encode()).digest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LEN]


def generate_key() -> NewKey:
    """A new random key (``sk-`` + 43 URL-safe characters, 256 bits), its hash and display prefix."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret=secret, hash=hash_key(secret), prefix=display_prefix(secret))
