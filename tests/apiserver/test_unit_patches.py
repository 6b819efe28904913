"""JSON patch, merge patch and strategic merge patch (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from newapi_operator.apiserver.patches import PatchConflict, PatchError, json_patch, merge_patch, strategic_merge

DOC: dict[str, Any] = {"metadata": {"name": "x", "resourceVersion": "5"}, "data": {"a": "1"}, "list": [1, 2, 3]}


def test_json_patch_all_operations() -> None:
    out = json_patch(DOC, [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "add", "path": "/list/-", "value": 4},
        {"op": "add", "path": "/list/0", "value": 0},
        {"op": "remove", "path": "/list/1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "copy", "from": "/data/a", "path": "/data/c"},
        {"op": "move", "from": "/data/b", "path": "/data/d"},
        {"op": "add", "path": "/metadata/annotations", "value": {"a~b/c": "1"}},
        {"op": "remove", "path": "/metadata/annotations/a~0b~1c"},
    ])
    assert out["data"] == {"a": "10", "c": "10", "d": "2"}
    assert out["list"] == [0, 2, 3, 4]
    assert out["metadata"]["annotations"] == {}
    assert DOC["data"] == {"a": "1"}  # the input is not modified


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}],
    [{"op": "replace", "path": "/data/missing", "value": "x"}],
    [{"op": "remove", "path": "/nope"}],
    [{"op": "add", "path": "/no/such/parent", "value": 1}],
    [{"op": "add", "path": "/list/9", "value": 1}],
])
def test_json_patch_conflicts(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(PatchConflict):
        json_patch(DOC, ops)


@pytest.mark.parametrize("ops", [{"op": "add"}, [{"op": "explode", "path": "/a"}], [{"op": "add", "path": "/a"}],
                                 [{"path": "/a"}], [{"op": "add", "path": "a", "value": 1}]])
def test_json_patch_malformed(ops: Any) -> None:
    with pytest.raises(PatchError):
        json_patch(DOC, ops)


def test_merge_patch() -> None:
    assert merge_patch(DOC, {"data": {"a": None, "b": "2"}, "list": [9]}) == {
        "metadata": DOC["metadata"], "data": {"b": "2"}, "list": [9]}
    assert merge_patch({"a": 1}, {"a": {"b": None}}) == {"a": {}}


POD_SPEC: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [
    {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
    {"name": "side", "image": "s:1"},
]}}}, "metadata": {"finalizers": ["x"], "ownerReferences": [{"uid": "u1", "name": "o1"}]}}


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return result


def test_strategic_merge_by_key() -> None:
    out = strategic_merge(POD_SPEC, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "2"}], "ports": [{"containerPort": 90}]},
        {"name": "new", "image": "n:1"},
    ]}}}, "metadata": {"finalizers": ["y", "x"], "ownerReferences": [{"uid": "u2", "name": "o2"}]}})
    by_name = {c["name"]: c for c in containers(out)}
    assert list(by_name) == ["app", "side", "new"]
    assert by_name["app"]["image"] == "a:1"
    assert by_name["app"]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert [p["containerPort"] for p in by_name["app"]["ports"]] == [80, 90]
    assert out["metadata"]["finalizers"] == ["x", "y"]
    assert [r["uid"] for r in out["metadata"]["ownerReferences"]] == ["u1", "u2"]


def test_strategic_merge_directives() -> None:
    out = strategic_merge(POD_SPEC, {
        "$setElementOrder/none": [],
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
            "containers": [{"name": "app", "$patch": "delete"}, {"name": "side", "image": "s:2"}],
        }}},
    })
    assert [c["name"] for c in containers(out)] == ["side"]
    assert containers(out)[0]["image"] == "s:2"
    assert out["metadata"]["finalizers"] == []
    replaced = strategic_merge(POD_SPEC, {"spec": {"template": {"$patch": "replace", "spec": {}}}})
    assert replaced["spec"]["template"] == {"spec": {}}
    retained = strategic_merge({"spec": {"a": 1, "b": 2}}, {"spec": {"$retainKeys": ["b", "c"], "c": 3}})
    assert retained["spec"] == {"b": 2, "c": 3}
    atomic = strategic_merge({"spec": {"rules": [1, 2]}}, {"spec": {"rules": [3]}})
    assert atomic["spec"]["rules"] == [3]


def test_strategic_merge_errors() -> None:
    with pytest.raises(PatchError):
        strategic_merge(POD_SPEC, {"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}})
    with pytest.raises(PatchError):
        strategic_merge(POD_SPEC, {"spec": {"$patch": "explode"}})
