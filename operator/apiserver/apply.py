"""Server-side apply (``application/apply-patch+yaml``): a documented subset.

Implemented:

- create-or-merge: applying to a missing object creates it; otherwise the applied
  configuration is merged into the live object (maps recursively; lists by their semantics:
  associative lists merged by key, sets unioned, other lists replaced as a whole);
- field ownership per ``fieldManager`` (required): the leaf fields each applier applied last;
  a field an applier stops applying is removed unless another applier still applies it;
- conflicts: applying a different value to a field another applier owns answers 409 Conflict
  naming the manager and field, unless ``force=true`` (which takes the field over).

Not implemented: ownership by non-apply writers (PUT/PATCH with a fieldManager take no
ownership, so they never conflict with appliers), ``metadata.managedFields`` (ownership is kept
server-side and not exposed), and apply on ``scale``.

List semantics: custom resources use the schema (``x-kubernetes-list-type: map`` with
``x-kubernetes-list-map-keys``, ``set``; anything else is atomic); built-in kinds use the
strategic-merge keys of :mod:`.patches` (``containers`` by ``name``, ...).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from .patches import MERGE_KEYS, MERGED_PRIMITIVE_LISTS

Path = tuple[Any, ...]
#: How a list at a path merges: ("atomic",), ("set",) or ("map", (key, ...)).
ListSemantics = tuple[Any, ...]
SemanticsFn = Callable[[Path], ListSemantics]

#: Metadata fields that identify an object; no applier owns them.
_IDENTITY = frozenset({"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                       "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
                       "generateName"})


class ApplyConflict(Exception):
    """Applied values clash with fields owned by other managers."""

    def __init__(self, conflicts: list[tuple[str, Path]]) -> None:
        self.conflicts = conflicts
        listed = "\n".join(f'- conflict with "{m}": {render_path(p)}' for m, p in conflicts)
        noun = "conflict" if len(conflicts) == 1 else "conflicts"
        super().__init__(f"Apply failed with {len(conflicts)} {noun}: {listed}" if len(conflicts) > 1
                         else f'Apply failed with 1 conflict: conflict with "{conflicts[0][0]}": '
                              f"{render_path(conflicts[0][1])}")


def render_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, tuple) and part[0] == "k":
            out += f"[{part[1]}]"
        elif isinstance(part, tuple) and part[0] == "v":
            out += f"[{json.dumps(part[1])}]"
        elif isinstance(part, tuple):
            continue
        else:
            out += f".{part}"
    return out


def builtin_semantics(path: Path) -> ListSemantics:
    """List semantics of built-in kinds, from the strategic-merge keys."""
    names = [p for p in path if isinstance(p, str)]
    field = names[-1] if names else ""
    parent = names[-2] if len(names) > 1 else ""
    if len(path) >= 2 and isinstance(path[-2], tuple):
        parent = f"{names[-2]}[]" if len(names) > 1 else parent
    if field in MERGED_PRIMITIVE_LISTS:
        return ("set",)
    key = MERGE_KEYS.get((parent, field)) or MERGE_KEYS.get(("*", field))
    return ("map", (key,)) if key else ("atomic",)


def schema_semantics(schema: dict[str, Any]) -> SemanticsFn:
    """List semantics of a custom resource from its structural schema."""

    def lookup(path: Path) -> ListSemantics:
        if path and path[0] == "metadata":
            return builtin_semantics(path)
        node: dict[str, Any] | None = schema
        for part in path:
            if node is None:
                break
            if isinstance(part, tuple):
                node = node.get("items")
            else:
                props = node.get("properties") or {}
                additional = node.get("additionalProperties")
                node = props.get(part) or (additional if isinstance(additional, dict) else None)
        if node is None:
            return ("atomic",)
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "map":
            return ("map", tuple(node.get("x-kubernetes-list-map-keys") or ()))
        if list_type == "set":
            return ("set",)
        return ("atomic",)

    return lookup


def _item_key(item: Any, keys: tuple[str, ...]) -> tuple[str, str] | None:
    if not isinstance(item, dict) or any(k not in item for k in keys):
        return None
    return ("k", json.dumps({k: item[k] for k in keys}, sort_keys=True))


#: Path element marking ownership of an associative list or set itself (not of its items).
CONTAINER = ("c",)


def _is_leaf(path: Path) -> bool:
    """Leaves carry values to compare; list containers and map-list item keys do not."""
    last = path[-1] if path else None
    return not (isinstance(last, tuple) and last[0] in ("c", "k"))


def field_set(config: Any, semantics: SemanticsFn, path: Path = ()) -> set[Path]:
    """The field paths an applied configuration sets: leaves, list containers and list item keys."""
    out: set[Path] = set()
    if isinstance(config, dict):
        if not config and path:
            out.add(path)
        for key, value in config.items():
            if not path and key in ("apiVersion", "kind"):
                continue
            if path == ("metadata",) and key in _IDENTITY:
                continue
            out |= field_set(value, semantics, (*path, key))
        return out
    if isinstance(config, list):
        sem = semantics(path)
        if sem[0] == "set" and all(not isinstance(v, (dict, list)) for v in config):
            return {(*path, CONTAINER)} | {(*path, ("v", v)) for v in config}
        if sem[0] == "map":
            out.add((*path, CONTAINER))
            for item in config:
                ident = _item_key(item, sem[1])
                if ident is None:
                    return {path}
                out |= {(*path, ident)} | field_set(item, semantics, (*path, ident))
            return out
        return {path}
    return {path}


def _get(obj: Any, path: Path, semantics: SemanticsFn) -> tuple[bool, Any]:
    node = obj
    for i, part in enumerate(path):
        if isinstance(part, tuple):
            if not isinstance(node, list):
                return False, None
            if part[0] == "v":
                return (part[1] in node), part[1]
            keys = semantics(path[:i])
            keys_t = keys[1] if keys[0] == "map" else ()
            match = next((it for it in node if _item_key(it, keys_t) == part), None)
            if match is None:
                return False, None
            node = match
        else:
            if not isinstance(node, dict) or part not in node:
                return False, None
            node = node[part]
    return True, node


def _remove(obj: Any, path: Path, semantics: SemanticsFn) -> None:
    if not path:
        return
    parent_found, parent = _get(obj, path[:-1], semantics)
    if not parent_found:
        return
    last = path[-1]
    if isinstance(last, tuple) and last[0] == "c":
        return
    if isinstance(last, tuple) and isinstance(parent, list):
        if last[0] == "v":
            while last[1] in parent:
                parent.remove(last[1])
        else:
            sem = semantics(path[:-1])
            keys = sem[1] if sem[0] == "map" else ()
            parent[:] = [it for it in parent if _item_key(it, keys) != last]
    elif isinstance(parent, dict):
        parent.pop(last, None)


def merge(live: Any, config: Any, semantics: SemanticsFn, path: Path = ()) -> Any:
    """Merge an applied configuration into a live value (a new value)."""
    if isinstance(config, dict) and isinstance(live, dict):
        out = dict(live)
        for key, value in config.items():
            out[key] = merge(live.get(key), value, semantics, (*path, key)) if key in live else copy.deepcopy(value)
        return out
    if isinstance(config, list) and isinstance(live, list):
        sem = semantics(path)
        if sem[0] == "set":
            return list(live) + [copy.deepcopy(v) for v in config if v not in live]
        if sem[0] == "map":
            out_list = [copy.deepcopy(v) for v in live]
            for item in config:
                ident = _item_key(item, sem[1])
                idx = next((i for i, v in enumerate(out_list) if ident and _item_key(v, sem[1]) == ident), None)
                if idx is None:
                    out_list.append(copy.deepcopy(item))
                else:
                    out_list[idx] = merge(out_list[idx], item, semantics, (*path, ident))
            return out_list
    return copy.deepcopy(config)


def _overlaps(a: Path, b: Path) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    manager: str,
    owners: dict[str, set[Path]],
    semantics: SemanticsFn,
    *,
    force: bool,
) -> tuple[dict[str, Any], dict[str, set[Path]]]:
    """Apply ``config`` as ``manager``; returns the new object and the new ownership table."""
    applied = field_set(config, semantics)
    owners = {m: set(paths) for m, paths in owners.items()}
    if live is None:
        owners[manager] = applied
        return copy.deepcopy(config), owners
    conflicts: list[tuple[str, Path]] = []
    for path in sorted(filter(_is_leaf, applied), key=render_path):
        _, want = _get(config, path, semantics)
        found, have = _get(live, path, semantics)
        if found and have == want:
            continue
        for other, paths in owners.items():
            if other != manager and any(_overlaps(path, p) for p in paths if _is_leaf(p)):
                conflicts.append((other, path))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    if force:
        for other, _ in conflicts:
            owners[other] = {p for p in owners[other] if not any(_overlaps(p, c) for _, c in conflicts)}
    result = merge(live, config, semantics)
    previously = owners.get(manager, set())
    still_owned = set().union(*(p for m, p in owners.items() if m != manager)) if owners else set()
    kept = still_owned | applied
    dropped = previously - applied
    # A list item that goes away goes as a whole: its fields (including its key) are not removed one by one.
    gone_items = {p for p in dropped if isinstance(p[-1], tuple) and p[-1][0] == "k" and p not in still_owned}
    dropped = {p for p in dropped if not any(len(p) > len(i) and p[: len(i)] == i for i in gone_items)}
    for path in sorted(dropped, key=len, reverse=True):
        if path[-1] == CONTAINER:
            container = path[:-1]
            if not any(p[: len(container)] == container for p in kept):
                _remove(result, container, semantics)
            continue
        if any(_overlaps(path, a) for a in applied if _is_leaf(a)) or path in still_owned:
            continue
        _remove(result, path, semantics)
    owners[manager] = applied
    return result, {m: p for m, p in owners.items() if p}
