"""Public key ids: the store's integer id as ``key_<n>`` (logs, metrics, admin API, the operator's status)."""

from __future__ import annotations

PREFIX = "key_"


def format_key_id(key_id: int) -> str:
    return f"{PREFIX}{key_id}"


def parse_key_id(text: str) -> int | None:
    """``key_12`` -> 12; None for anything this gateway never handed out."""
    if not text.startswith(PREFIX):
        return None
    digits = text[len(PREFIX):]
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18 or digits.startswith("0"):
        return None
    return int(digits)
