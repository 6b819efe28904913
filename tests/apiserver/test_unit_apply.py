"""Server-side apply field ownership (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from newapi_operator.apiserver.apply import ApplyConflict, apply, builtin_semantics, schema_semantics

SCHEMA = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
              "items": {"type": "object"}},
    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
    "args": {"type": "array", "items": {"type": "string"}},
}}}}
SEM = schema_semantics(SCHEMA)


def obj(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"}, "spec": spec}


def test_create_then_owned_fields_are_removed_when_no_longer_applied() -> None:
    live, owners = apply(None, obj(a=1, b=2, tags=["x"]), "alice", {}, SEM, force=False)
    live, owners = apply(live, obj(a=1), "alice", owners, SEM, force=False)
    assert live["spec"] == {"a": 1}
    assert ("spec", "a") in owners["alice"]


def test_fields_of_others_survive_and_conflict() -> None:
    live, owners = apply(None, obj(a=1), "alice", {}, SEM, force=False)
    live, owners = apply(live, obj(b=2), "bob", owners, SEM, force=False)
    assert live["spec"] == {"a": 1, "b": 2}
    same, _ = apply(live, obj(a=1), "bob", owners, SEM, force=False)  # same value: shared, no conflict
    assert same["spec"]["a"] == 1
    with pytest.raises(ApplyConflict) as raised:
        apply(live, obj(a=3), "bob", owners, SEM, force=False)
    assert raised.value.conflicts == [("alice", ("spec", "a"))]
    forced, owners = apply(live, obj(a=3, b=2), "bob", owners, SEM, force=True)
    assert forced["spec"]["a"] == 3
    assert ("spec", "a") not in owners.get("alice", set())


def test_map_lists_merge_by_key_and_sets_union() -> None:
    live, owners = apply(None, obj(ports=[{"name": "http", "port": 80}], tags=["a"]), "web", {}, SEM, force=False)
    live, owners = apply(live, obj(ports=[{"name": "metrics", "port": 9}], tags=["b"]), "mon", owners, SEM,
                         force=False)
    assert [p["name"] for p in live["spec"]["ports"]] == ["http", "metrics"]
    assert live["spec"]["tags"] == ["a", "b"]
    live, owners = apply(live, obj(tags=["a"]), "web", owners, SEM, force=False)
    assert [p["name"] for p in live["spec"]["ports"]] == ["metrics"]
    assert live["spec"]["tags"] == ["a", "b"]


def test_atomic_lists_replace() -> None:
    live, owners = apply(None, obj(args=["a", "b"]), "x", {}, SEM, force=False)
    live, owners = apply(live, obj(args=["c"]), "x", owners, SEM, force=False)
    assert live["spec"]["args"] == ["c"]


def test_builtin_semantics_follow_strategic_merge_keys() -> None:
    assert builtin_semantics(("spec", "template", "spec", "containers")) == ("map", ("name",))
    assert builtin_semantics(("spec", "template", "spec", "containers", ("k", "{}"), "ports")) == (
        "map", ("containerPort",))
    assert builtin_semantics(("spec", "ports")) == ("map", ("port",))
    assert builtin_semantics(("metadata", "finalizers")) == ("set",)
    assert builtin_semantics(("spec", "rules")) == ("atomic",)
