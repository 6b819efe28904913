"""JSON on the hot path: orjson when installed (about 5x faster on request-sized bodies), else the stdlib."""

from __future__ import annotations

import json
from typing import Any

try:  # pragma: no cover - depends on the environment
    import orjson

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    DecodeError: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
    BACKEND = "orjson"
except ImportError:  # pragma: no cover
    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    DecodeError = (ValueError, UnicodeDecodeError)
    BACKEND = "json"
