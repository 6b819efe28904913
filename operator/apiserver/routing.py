"""Request routing: Kubernetes resource paths and query parameters (pure parsing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import bad_request

#: Subresources of a namespace object (``/api/v1/namespaces/<name>/status``).
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class Route:
    """A resource request path: ``/api/v1/...`` or ``/apis/<group>/<version>/...``."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_path(path: str) -> Route | None:
    """Parse a resource path; None for anything else (discovery, unknown paths)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    return Route(group, version, plural, namespace, name, subresource)


_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def flag(query: Mapping[str, str], name: str) -> bool | None:
    """A boolean query parameter as Go's ``strconv.ParseBool`` reads it (None when absent)."""
    value = query.get(name)
    if value is None:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE or value == "":
        return False
    raise bad_request(f"invalid boolean value {value!r} for query parameter {name!r}")


def integer(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise bad_request(f"invalid integer value {value!r} for query parameter {name!r}") from None
    if number < 0:
        raise bad_request(f"{name} must be non-negative, got {number}")
    return number


def field_validation(query: Mapping[str, str]) -> str:
    value = query.get("fieldValidation") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise bad_request(f'fieldValidation must be one of "Strict", "Warn", "Ignore", got {value!r}')
    return value
