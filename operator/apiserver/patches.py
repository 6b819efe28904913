"""The PATCH formats: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch.

Strategic merge patch (built-in kinds only, as on a real server) implements the list
semantics the product and kubectl use: lists merged by key (``containers``, ``initContainers``,
``env``, ``volumes``, ``imagePullSecrets``, ``hostAliases``: ``name``/``ip``; container
``ports``: ``containerPort``; Service ``ports``: ``port``; ``volumeMounts``: ``mountPath``;
``ownerReferences``: ``uid``; ``conditions``: ``type``; ``topologySpreadConstraints``:
``topologyKey``), ``finalizers`` merged as a set, and the directives ``$patch: replace|delete|merge``
(on maps and list items), ``$retainKeys``, ``$setElementOrder/<list>`` and
``$deleteFromPrimitiveList/<list>``. Other lists are replaced (atomic), as for fields without a
patch strategy. Errors raise :class:`PatchError` (bad document, 400) or :class:`PatchConflict`
(cannot apply, 422).
"""

from __future__ import annotations

import copy
import json
from typing import Any


class PatchError(ValueError):
    """The patch document itself is malformed (the server answers 400)."""


class PatchConflict(ValueError):
    """The patch is well-formed but cannot be applied, e.g. a failed ``test`` (the server answers 422)."""


# ---------------------------------------------------------------------------------------------
# JSON patch
# ---------------------------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool, path: str) -> int:
    if token == "-" and for_add:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchConflict(f"invalid array index {token!r} in {path}")
    idx = int(token)
    limit = len(container) if for_add else len(container) - 1
    if idx > limit:
        raise PatchConflict(f"array index {idx} out of bounds in {path}")
    return idx


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchConflict(f"doc is missing path: {path}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False, path=path)]
        else:
            raise PatchConflict(f"doc is missing path: {path}")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchConflict(f"doc is missing key: {path}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False, path=path)]
    raise PatchConflict(f"doc is missing path: {path}")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True, path=path), value)
    else:
        raise PatchConflict(f"doc is missing path: {path}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchConflict("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchConflict(f"unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, for_add=False, path=path))
    raise PatchConflict(f"doc is missing path: {path}")


def json_patch(doc: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply an RFC 6902 patch to a copy of ``doc``."""
    if not isinstance(patch, list):
        raise PatchError("json patch must be a list of operations")
    result: Any = copy.deepcopy(doc)
    for op in patch:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid json patch operation: {json.dumps(op)}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"missing value for {kind} operation on {path}")
        if kind == "add":
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            result, _ = _remove(result, path)
        elif kind == "replace":
            _get(result, path)  # must exist
            result, _ = _remove(result, path) if _pointer(path) else (result, None)
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "move":
            if "from" not in op:
                raise PatchError(f"missing from for move operation on {path}")
            result, value = _remove(result, op["from"])
            result = _add(result, path, value)
        elif kind == "copy":
            if "from" not in op:
                raise PatchError(f"missing from for copy operation on {path}")
            result = _add(result, path, copy.deepcopy(_get(result, op["from"])))
        elif kind == "test":
            try:
                current = _get(result, path)
            except PatchConflict:
                current = None
            if not _json_equal(current, op["value"]):
                raise PatchConflict(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"unexpected json patch operation: {kind!r}")
    if not isinstance(result, dict):
        raise PatchConflict("the patched document is not an object")
    return result


def _json_equal(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# JSON merge patch
# ---------------------------------------------------------------------------------------------


def merge_patch(doc: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch (``null`` deletes; lists replace) to a copy of ``doc``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------------------------
# Strategic merge patch
# ---------------------------------------------------------------------------------------------

#: (parent field, list field) -> merge key; parent "*" matches any parent.
MERGE_KEYS: dict[tuple[str, str], str] = {
    ("*", "containers"): "name",
    ("*", "initContainers"): "name",
    ("*", "ephemeralContainers"): "name",
    ("*", "env"): "name",
    ("*", "volumes"): "name",
    ("*", "volumeMounts"): "mountPath",
    ("*", "volumeDevices"): "devicePath",
    ("*", "imagePullSecrets"): "name",
    ("*", "hostAliases"): "ip",
    ("*", "ownerReferences"): "uid",
    ("*", "conditions"): "type",
    ("*", "topologySpreadConstraints"): "topologyKey",
    ("*", "resourceClaims"): "name",
    ("containers[]", "ports"): "containerPort",
    ("initContainers[]", "ports"): "containerPort",
    ("spec", "ports"): "port",
}
#: Primitive lists merged as sets (patchStrategy: merge).
MERGED_PRIMITIVE_LISTS = frozenset({"finalizers"})


def _merge_key(parent: str, field: str) -> str | None:
    return MERGE_KEYS.get((parent, field)) or MERGE_KEYS.get(("*", field))


def strategic_merge(doc: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply a strategic merge patch (built-in kinds) to a copy of ``doc``."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be an object")
    result = _smp_map(copy.deepcopy(doc), patch, "")
    if not isinstance(result, dict):
        raise PatchConflict("the patched document is not an object")
    return result


def _smp_map(doc: Any, patch: dict[str, Any], parent: str) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch directive: {directive!r}")
    result: dict[str, Any] = dict(doc) if isinstance(doc, dict) else {}
    orders: dict[str, list[Any]] = {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value if isinstance(value, list) else []
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _smp_map(result.get(key), value, key)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(result.get(key), value, parent, key)
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(result[field], order, _merge_key(parent, field))
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("$retainKeys must be a list")
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(current: Any, patch: list[Any], parent: str, field: str) -> list[Any]:
    current_list: list[Any] = list(current) if isinstance(current, list) else []
    key = _merge_key(parent, field)
    if field in MERGED_PRIMITIVE_LISTS:
        out = list(current_list)
        for item in patch:
            if item not in out:
                out.append(copy.deepcopy(item))
        return out
    if key is None:
        return [_strip_directives(copy.deepcopy(v)) for v in patch]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip_directives(copy.deepcopy(v)) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    out = [copy.deepcopy(v) for v in current_list]
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"{field}: items of a list merged by {key!r} must be objects")
        if key not in item:
            raise PatchError(f"{field}: map in list is missing the merge key {key!r}")
        idx = next((i for i, v in enumerate(out) if isinstance(v, dict) and v.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip_directives(copy.deepcopy(item)))
        else:
            out[idx] = _smp_map(out[idx], item, f"{field}[]")
    return out


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> str:
        return json.dumps(item.get(key) if key and isinstance(item, dict) else item, sort_keys=True)

    wanted = [ident(o) for o in order]
    by_ident = {ident(item): item for item in items}
    ordered = [by_ident[w] for w in wanted if w in by_ident]
    rest = [item for item in items if ident(item) not in wanted]
    return ordered + rest
