"""Conformance: JSON patch, merge patch, strategic merge patch and server-side apply."""

from __future__ import annotations

from typing import Any

import yaml


def deployment(name: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}},
    }


async def test_json_patch_operations(cluster: Any) -> None:
    obj = await cluster.create(cluster.cm(), cluster.configmap("jp", a="1", b="2"))
    rv = obj["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/data/c", "value": "3"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/keep"]},
    ]
    response = await cluster.patch(cluster.cm("jp"), ops, "json")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"a": "10", "c": "3"}
    assert response.json()["metadata"]["finalizers"] == ["example.com/keep"]
    await cluster.patch(cluster.cm("jp"), [{"op": "remove", "path": "/metadata/finalizers"}], "json")


async def test_failed_json_patch_test_answers_422(cluster: Any) -> None:
    await cluster.create(cluster.cm(), cluster.configmap("jt", a="1"))
    stale = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
             {"op": "replace", "path": "/data/a", "value": "2"}]
    response = await cluster.patch(cluster.cm("jt"), stale, "json")
    assert response.status_code == 422, response.text
    assert response.json()["kind"] == "Status"
    assert response.json()["reason"] == "Invalid"
    assert (await cluster.get(cluster.cm("jt")))["data"] == {"a": "1"}
    missing = [{"op": "replace", "path": "/data/nope/deeper", "value": "x"}]
    assert (await cluster.patch(cluster.cm("jt"), missing, "json")).status_code == 422


async def test_merge_patch_null_deletes_and_lists_replace(cluster: Any) -> None:
    body = cluster.widget("mp", size=2, tags=["a", "b"], settings={"x": "1", "y": "2"})
    await cluster.create(cluster.widgets(), body)
    response = await cluster.patch(cluster.widgets("mp"), {"spec": {"tags": ["c"], "settings": {"x": None}}})
    assert response.status_code == 200, response.text
    spec = response.json()["spec"]
    assert spec["tags"] == ["c"]
    assert spec["settings"] == {"y": "2"}
    assert spec["size"] == 2


async def test_patch_with_stale_resource_version_answers_409(cluster: Any) -> None:
    obj = await cluster.create(cluster.cm(), cluster.configmap("prv", a="1"))
    await cluster.patch(cluster.cm("prv"), {"data": {"a": "2"}})
    stale = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "data": {"a": "3"}}
    response = await cluster.patch(cluster.cm("prv"), stale)
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "Conflict"


async def test_strategic_merge_merges_containers_env_and_ports_by_key(cluster: Any) -> None:
    containers = [
        {"name": "app", "image": "example/app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 8080, "name": "http"}]},
        {"name": "sidecar", "image": "example/sidecar:1"},
    ]
    await cluster.create(cluster.path("deployments", group="apps"), deployment("smp", containers))
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "example/app:2", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
         "ports": [{"containerPort": 9090, "name": "metrics"}]},
    ]}}}}
    response = await cluster.patch(cluster.path("deployments", "smp", group="apps"), patch, "strategic")
    assert response.status_code == 200, response.text
    merged = {c["name"]: c for c in response.json()["spec"]["template"]["spec"]["containers"]}
    assert set(merged) == {"app", "sidecar"}
    assert merged["app"]["image"] == "example/app:2"
    assert {e["name"]: e["value"] for e in merged["app"]["env"]} == {"A": "1", "B": "20", "C": "3"}
    assert sorted(p["containerPort"] for p in merged["app"]["ports"]) == [8080, 9090]


async def test_strategic_merge_delete_directive_and_finalizers(cluster: Any) -> None:
    containers = [{"name": "app", "image": "example/app:1"}, {"name": "old", "image": "example/old:1"}]
    await cluster.create(cluster.path("deployments", group="apps"), deployment("smd", containers))
    patch = {"metadata": {"finalizers": ["example.com/a"]},
             "spec": {"template": {"spec": {"containers": [{"name": "old", "$patch": "delete"}]}}}}
    response = await cluster.patch(cluster.path("deployments", "smd", group="apps"), patch, "strategic")
    assert response.status_code == 200, response.text
    assert [c["name"] for c in response.json()["spec"]["template"]["spec"]["containers"]] == ["app"]
    again = await cluster.patch(cluster.path("deployments", "smd", group="apps"),
                                {"metadata": {"finalizers": ["example.com/b"]}}, "strategic")
    assert again.json()["metadata"]["finalizers"] == ["example.com/a", "example.com/b"]
    await cluster.patch(cluster.path("deployments", "smd", group="apps"), {"metadata": {"finalizers": None}})


async def test_strategic_merge_on_custom_resource_answers_415(cluster: Any) -> None:
    await cluster.create(cluster.widgets(), cluster.widget("nosmp"))
    response = await cluster.patch(cluster.widgets("nosmp"), {"spec": {"size": 2}}, "strategic")
    assert response.status_code == 415, response.text
    assert response.json()["reason"] == "UnsupportedMediaType"


async def test_server_side_apply_creates_then_merges(cluster: Any) -> None:
    config = cluster.widget("ssa", size=2, tags=["a"])
    config["metadata"]["namespace"] = cluster.namespace
    created = await cluster.patch(cluster.widgets("ssa"), yaml.safe_dump(config), "apply", fieldManager="alice")
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["size"] == 2
    await cluster.patch(cluster.widgets("ssa"), {"spec": {"title": "Hello"}})  # someone else's field
    config["spec"] = {"size": 3}
    applied = await cluster.patch(cluster.widgets("ssa"), yaml.safe_dump(config), "apply", fieldManager="alice")
    assert applied.status_code == 200, applied.text
    spec = applied.json()["spec"]
    assert spec["size"] == 3
    assert "tags" not in spec  # alice stopped applying it and nobody else owns it
    assert spec["title"] == "Hello"  # not alice's field: kept


async def test_server_side_apply_conflicts_and_force(cluster: Any) -> None:
    config = cluster.widget("ssc", size=2)
    await cluster.patch(cluster.widgets("ssc"), yaml.safe_dump(config), "apply", fieldManager="alice")
    config["spec"]["size"] = 5
    clash = await cluster.patch(cluster.widgets("ssc"), yaml.safe_dump(config), "apply", fieldManager="bob")
    assert clash.status_code == 409, clash.text
    assert clash.json()["reason"] == "Conflict"
    assert "alice" in clash.json()["message"]
    forced = await cluster.patch(cluster.widgets("ssc"), yaml.safe_dump(config), "apply", fieldManager="bob",
                                 force="true")
    assert forced.status_code == 200, forced.text
    assert forced.json()["spec"]["size"] == 5


async def test_server_side_apply_needs_field_manager(cluster: Any) -> None:
    response = await cluster.patch(cluster.widgets("nofm"), yaml.safe_dump(cluster.widget("nofm")), "apply")
    assert response.status_code == 422, response.text
    assert response.json()["details"]["kind"] == "PatchOptions"
    forced = await cluster.patch(cluster.widgets("nofm"), {"spec": {"size": 2}}, force="true")
    assert forced.status_code == 422, forced.text  # force is for apply patches only


async def test_server_side_apply_merges_map_lists_by_key(cluster: Any) -> None:
    base = cluster.widget("ports", ports=[{"name": "http", "port": 80}])
    await cluster.patch(cluster.widgets("ports"), yaml.safe_dump(base), "apply", fieldManager="web")
    other = cluster.widget("ports", ports=[{"name": "metrics", "port": 9090}])
    response = await cluster.patch(cluster.widgets("ports"), yaml.safe_dump(other), "apply", fieldManager="metrics")
    assert response.status_code == 200, response.text
    assert sorted(p["name"] for p in response.json()["spec"]["ports"]) == ["http", "metrics"]
