"""Does a live object already hold the desired one? Only the fields we set count (pure).

A real API server adds defaults (``protocol: TCP``, probe thresholds, ``clusterIP``...) and
other controllers add their own fields; none of that is drift. The rule is: every field we set
must have the same value live (maps: our keys only; lists: same length and element by element,
or by key for the lists Kubernetes merges by key, where foreign items are tolerated). Maps
we own entirely (``data`` of ConfigMaps and Secrets) must not hold foreign keys either: a
credential of an unbound channel must disappear.
"""

from __future__ import annotations

from typing import Any

Path = tuple[str | int, ...]

#: Lists merged by key on the server (strategic merge / server-side apply): item key field.
KEYED_LISTS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
}
#: Top-level maps the operator owns entirely (no foreign keys allowed).
EXCLUSIVE_MAPS: frozenset[str] = frozenset({"data", "binaryData", "stringData"})
#: Annotations and labels under this prefix are the operator's own: a stale one is drift too.
OWN_PREFIX = "newapi.openova.io/"
_META_MAPS = frozenset({"annotations", "labels"})
#: Metadata fields the server owns; never compared.
_IGNORED_META = frozenset({"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                           "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"})


def _key_for(path: Path, field: str, items: list[Any], kind: str) -> str | None:
    if field in KEYED_LISTS:
        return KEYED_LISTS[field]
    if field == "ports" and items and all(isinstance(i, dict) and "containerPort" in i for i in items):
        return "containerPort"
    if field == "ports" and kind == "Service" and path == ("spec", "ports"):
        return "port"
    return None


def differences(desired: Any, live: Any, *, kind: str = "", path: Path = ()) -> list[str]:
    """Paths (dotted) where ``live`` does not hold ``desired``; empty when nothing needs writing."""
    out: list[str] = []
    _diff(desired, live, kind, path, out)
    return out


def _render(path: Path) -> str:
    text = ""
    for p in path:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else p)
    return text or "<root>"


def _diff(desired: Any, live: Any, kind: str, path: Path, out: list[str]) -> None:
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            out.append(_render(path))
            return
        for key, value in desired.items():
            if path == ("metadata",) and key in _IGNORED_META:
                continue
            if not path and key in ("apiVersion", "kind", "status"):
                continue
            if key not in live:
                if value in ({}, [], None):
                    continue  # the server drops empty values
                out.append(_render((*path, key)))
                continue
            _diff(value, live[key], kind, (*path, key), out)
        if len(path) == 1 and path[0] in EXCLUSIVE_MAPS:
            out.extend(_render((*path, k)) for k in live if k not in desired)
        if len(path) == 2 and path[0] == "metadata" and path[1] in _META_MAPS:
            out.extend(_render((*path, k)) for k in live if k.startswith(OWN_PREFIX) and k not in desired)
        return
    if isinstance(desired, list):
        if not isinstance(live, list):
            if desired:
                out.append(_render(path))
            return
        field = str(path[-1]) if path else ""
        key = _key_for(path, field, desired, kind)
        if key is not None and all(isinstance(i, dict) and key in i for i in desired):
            by_key = {i.get(key): i for i in live if isinstance(i, dict)}
            for i, item in enumerate(desired):
                if item[key] not in by_key:
                    out.append(_render((*path, i)))
                else:
                    _diff(item, by_key[item[key]], kind, (*path, i), out)
            return
        if len(desired) != len(live):
            out.append(_render(path))
            return
        for i, (d, l_) in enumerate(zip(desired, live, strict=True)):
            _diff(d, l_, kind, (*path, i), out)
        return
    if desired != live and not _same_scalar(desired, live):
        out.append(_render(path))


def _same_scalar(desired: Any, live: Any) -> bool:
    """Values a real server stores in another, equivalent spelling."""
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if isinstance(desired, int) and isinstance(live, str):
        return str(desired) == live  # e.g. an int-or-string field echoed as a string
    return False


def foreign_keys(desired: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """A merge patch removing keys of exclusive maps (and our own stale annotations/labels); {} if none."""
    out: dict[str, Any] = {}
    for name in EXCLUSIVE_MAPS:
        want = desired.get(name)
        have = live.get(name)
        if isinstance(have, dict):
            extra = sorted(k for k in have if not isinstance(want, dict) or k not in want)
            if extra:
                out[name] = dict.fromkeys(extra)
    for name in _META_MAPS:
        want = (desired.get("metadata") or {}).get(name) or {}
        have = (live.get("metadata") or {}).get(name) or {}
        extra = sorted(k for k in have if k.startswith(OWN_PREFIX) and k not in want)
        if extra:
            out.setdefault("metadata", {})[name] = dict.fromkeys(extra)
    return out
